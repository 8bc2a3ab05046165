/** Prometheus metrics of one relay instance (its own registry, so tests can build many). */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The relay's metrics. */
export interface RelayMetrics {
  registry: Registry;
  jobs: Counter<'outcome'>;
  endToEnd: Histogram<'platform'>;
  generation: Histogram;
  openSockets: Gauge;
  bufferedBytes: Gauge;
  pushes: Counter<'kind'>;
  safety: Counter<'action' | 'platform'>;
}

/** Create the metrics; `bufferedBytes` and `openSockets` read live values on scrape. */
export function createMetrics(live: {
  bufferedBytes(): number;
  openSockets(): number;
}): RelayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'imagine_' });
  return {
    registry,
    jobs: new Counter({
      name: 'imagine_jobs_total',
      help: 'Jobs by outcome (queued, done, failed, expired, cancelled, refused)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    endToEnd: new Histogram({
      name: 'imagine_job_end_to_end_seconds',
      help: 'From enqueue to image at the relay',
      labelNames: ['platform'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    }),
    generation: new Histogram({
      name: 'imagine_generation_seconds',
      help: 'Time the generator took, as reported by the worker',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers: [registry],
    }),
    openSockets: new Gauge({
      name: 'imagine_websockets_open',
      help: 'Open WebSocket connections',
      registers: [registry],
      collect() {
        this.set(live.openSockets());
      },
    }),
    bufferedBytes: new Gauge({
      name: 'imagine_buffered_image_bytes',
      help: 'Bytes of finished images held in memory',
      registers: [registry],
      collect() {
        this.set(live.bufferedBytes());
      },
    }),
    pushes: new Counter({
      name: 'imagine_pushes_total',
      help: 'Worker pushes by kind (status, image, duplicate, legacy, rejected)',
      labelNames: ['kind'],
      registers: [registry],
    }),
    safety: new Counter({
      name: 'imagine_safety_decisions_total',
      help: 'Output-safety decisions per image (deliver, spoiler, review, block) and review actions (approved, rejected, expired)',
      labelNames: ['action', 'platform'],
      registers: [registry],
    }),
  };
}
