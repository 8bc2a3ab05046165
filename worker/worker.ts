/** The worker: a queue consumer feeding the job runner. */
import type { Logger } from 'pino';
import type { JobConsumer } from '../queue/queue.ts';
import type { Generator } from './generator.ts';
import type { InputFetcher } from './input-fetcher.ts';
import { createRelayPusher, type RelayPusher } from './push-client.ts';
import { createJobRunner, type WorkerSafety } from './runner.ts';

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  consumer: JobConsumer;
  generator: Generator;
  relayUrl: string;
  secret: string;
  maxAttempts: number;
  /** Largest image the relay accepts (`PUSH_MAX_BYTES`). */
  maxImageBytes?: number;
  logger: Logger;
  pusher?: RelayPusher;
  /** Output safety (the classifier loads on the first job whose policy is not `off`). */
  safety?: WorkerSafety;
  /** Fetches the input images of vary and upscale jobs. */
  fetchInput?: InputFetcher;
  /** Progress forwarding and cancel polls (`PROGRESS_PUSH_MS`, `CANCEL_POLL_MS`). */
  progress?: { intervalMs: number; pollMs: number };
}

/** A running worker. */
export interface RunningWorker {
  stop(): Promise<void>;
}

/** Start consuming jobs. */
export function startWorker(opts: WorkerOptions): RunningWorker {
  const pusher = opts.pusher ?? createRelayPusher({ relayUrl: opts.relayUrl, secret: opts.secret });
  const run = createJobRunner({
    generator: opts.generator,
    pusher,
    logger: opts.logger,
    maxAttempts: opts.maxAttempts,
    safety: opts.safety,
    ...(opts.maxImageBytes === undefined ? {} : { maxImageBytes: opts.maxImageBytes }),
    ...(opts.fetchInput ? { fetchInput: opts.fetchInput } : {}),
    ...(opts.progress ? { progress: opts.progress } : {}),
  });
  opts.consumer.start((job, ctx) => run(job, ctx));
  opts.logger.info({ generator: opts.generator.name }, 'worker started');
  return { stop: () => opts.consumer.stop() };
}
