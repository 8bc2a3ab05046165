import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { BackendStatus } from '../../contracts/backends.ts';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { freePort } from '../helpers/net.ts';
import { followJob } from '../helpers/ws.ts';

describe('failover over GENERATORS: the first backend dies mid-load', () => {
  let first: FakeA1111;
  let second: FakeA1111;
  let app: Awaited<ReturnType<typeof startTestImagine>>;

  beforeAll(async () => {
    first = await startFakeA1111();
    second = await startFakeA1111();
    first.stepMs = 25;
    second.stepMs = 25;
    app = await startTestImagine({
      GENERATORS: JSON.stringify([
        { name: 'first', type: 'a1111', url: first.url, priority: 1 },
        { name: 'second', type: 'a1111', url: second.url, priority: 2 },
      ]),
      GENERATOR_FAILURES_TO_OPEN: '1',
      GENERATOR_COOLDOWN_SECONDS: '600',
      WORKER_CONCURRENCY: '4',
      SQS_MAX_RECEIVE_COUNT: '3',
      LIMIT_CONCURRENT_PER_USER: '100',
    });
  });
  afterAll(async () => {
    await app?.stop();
    await first?.close();
    await second?.close();
  });

  it('every job still ends in exactly one answer, and /healthz and /metrics say which backend is down', async () => {
    const jobs = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        enqueueJob(app.url, `failover job ${i}`, { width: 64, height: 64, seed: 100 + i }),
      ),
    );
    const followed = Promise.all(jobs.map((j) => followJob(j.ws, 60_000)));
    // Let the first backend take some of the load, then kill it with requests in flight.
    await expect.poll(() => first.finished, { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
    first.kill();
    const results = await followed;
    for (const [i, got] of results.entries()) {
      const terminal = got.texts.filter(
        (t) => t.type === 'status' && ['done', 'failed', 'expired'].includes(t.state as string),
      );
      expect(terminal, `job ${i}`).toHaveLength(1);
      expect(terminal[0]!.state, `job ${i}`).toBe('done');
      expect(got.binaries, `job ${i}`).toHaveLength(1);
      expect(got.texts.find((t) => t.type === 'image')).toMatchObject({ seed: 100 + i });
    }
    // Both served some: the second took over what the first could no longer do.
    expect(first.finished).toBeGreaterThanOrEqual(2);
    expect(second.finished).toBeGreaterThan(0);
    expect(first.finished + second.finished).toBeGreaterThanOrEqual(12);

    const health = (await (await fetch(`${app.url}/healthz`)).json()) as {
      backends: BackendStatus[];
    };
    const byName = Object.fromEntries(health.backends.map((b) => [b.name, b]));
    expect(byName.first).toMatchObject({ state: 'unhealthy', lastError: 'GENERATOR_UNAVAILABLE' });
    expect(byName.second).toMatchObject({ state: 'healthy' });
    expect(byName.second!.latencyMs!.average).toBeGreaterThan(0);

    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/imagine_backend_up\{backend="first"\} 0/);
    expect(metrics).toMatch(/imagine_backend_up\{backend="second"\} 1/);
    expect(metrics).toMatch(
      /imagine_backend_calls_total\{backend="first",outcome="retryable"\} [1-9]/,
    );
    expect(metrics).toContain('imagine_jobs_total');
  });
});

describe('a worker on its own (ROLE=worker) shows its backends on METRICS_PORT', () => {
  it('serves /healthz with each backend and /metrics with the backend metrics', async () => {
    const gpu = await startFakeA1111();
    const port = await freePort();
    const worker = await startTestImagine({
      ROLE: 'worker',
      QUEUE_BACKEND: 'bullmq',
      REDIS_URL: inject('redisUrl'),
      REDIS_KEY_PREFIX: `imagine-test-${process.pid}-worker-health:`,
      METRICS_PORT: String(port),
      GENERATORS: JSON.stringify([
        { name: 'gpu', type: 'a1111', url: gpu.url },
        { name: 'gone', type: 'a1111', url: 'http://127.0.0.1:9', priority: 2 },
      ]),
    });
    try {
      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as {
        role: string;
        backends: BackendStatus[];
      };
      expect(health.role).toBe('worker');
      expect(health.backends.map((b) => [b.name, b.state])).toEqual([
        ['gpu', 'healthy'],
        ['gone', 'healthy'],
      ]);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/imagine_backend_up\{backend="gone"\} 1/);
      expect((await fetch(`http://127.0.0.1:${port}/enqueue`)).status).toBe(404);
    } finally {
      await worker.stop();
      await gpu.close();
    }
  });
});
