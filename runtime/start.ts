/**
 * Wires the parts together for a role: `all` (relay + worker, one process), `relay`, `worker`.
 * Tests and benchmarks start the very same thing the entry point does.
 */
import { join, resolve } from 'node:path';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { ChatAdapter } from '../bot/adapters.ts';
import type { BackendHealth } from '../contracts/backends.ts';
import type { Config } from '../contracts/config.ts';
import { parseHostList } from '../contracts/input-url.ts';
import type { JobConsumer, JobQueue } from '../queue/queue.ts';
import type { RedrivePolicy } from '../queue/sqs.ts';
import type { ChatDeliverer } from '../relay/delivery.ts';
import type { JobLedger } from '../relay/job-ledger.ts';
import type { AdmissionPolicy } from '../submit/submit.ts';
import type { Generator } from '../worker/generator.ts';
import type { GeneratorRouter } from '../worker/generators/router.ts';
import type { RelayPusher } from '../worker/push-client.ts';
import type { ImageClassifier } from '../worker/safety/classifier.ts';
import type { RunningWorker } from '../worker/worker.ts';

// Each part is imported when a role and configuration need it, so a process holds in memory
// only the libraries it uses (a relay on SQS loads no BullMQ, no Redis client without REDIS_URL
// and no generator, a worker no Fastify): every module kept is heap each full GC marks.

/** Options beyond configuration: injected parts for tests and chat adapters. */
export interface StartOptions {
  logger: Logger;
  role?: Config['ROLE'];
  generator?: Generator;
  admission?: AdmissionPolicy;
  deliverers?: ChatDeliverer[];
  plugins?: FastifyPluginAsync[];
  /** Chat adapters; by default built from configuration. */
  adapters?: ChatAdapter[];
  /** The worker's safety classifier; by default NSFWJS as configured (loaded on first use). */
  classifier?: ImageClassifier;
  /**
   * How the worker pushes to the relay (tests wrap it); by default signed HTTP to RELAY_URL, or,
   * with the relay in this process and no RELAY_URL, handed to it in process.
   */
  pusher?: RelayPusher;
}

/** A running imagine. */
export interface Running {
  /** Base URL of the relay (when this process runs it). */
  url: string | undefined;
  relay: FastifyInstance | undefined;
  worker: RunningWorker | undefined;
  /** Which queue backend this process uses. */
  queueBackend: Config['QUEUE_BACKEND'];
  /**
   * The SQS parts, when the backend is SQS: `client` sends, deletes and changes visibility;
   * `receiveClient` makes the worker's long polls (the same client unless embedded).
   */
  sqs:
    | {
        client: SQSClient;
        receiveClient: SQSClient;
        queueUrl: string;
        deadLetterUrl: string | undefined;
      }
    | undefined;
  stop(): Promise<void>;
}

/** Start the parts a role needs. A failure part-way stops whatever had started. */
export async function startImagine(config: Readonly<Config>, opts: StartOptions): Promise<Running> {
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops)
      await stop().catch((err) => opts.logger.warn({ err }, 'error while stopping'));
  };
  try {
    return await startParts(config, opts, stops, stopAll);
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function startParts(
  config: Readonly<Config>,
  opts: StartOptions,
  stops: Array<() => Promise<void>>,
  stopAll: () => Promise<void>,
): Promise<Running> {
  const { logger } = opts;
  const role = opts.role ?? config.ROLE;

  const queue = await startQueue(config, logger, stops);
  // A relay alone only names the generator (its workers run it): no generator modules loaded.
  const generator =
    opts.generator ??
    (role === 'relay'
      ? undefined
      : await (await import('../worker/generators/index.ts')).generatorFromConfig(config));
  let relay: FastifyInstance | undefined;
  let url: string | undefined;
  if (role === 'all' || role === 'relay') {
    const adapters =
      opts.adapters ??
      (await (await import('../bot/adapters.ts')).chatAdaptersFromConfig({ config, logger }));
    const deliverers = [
      ...(opts.deliverers ?? []),
      ...adapters.flatMap((a) => (a.deliverer ? [a.deliverer] : [])),
    ];
    const plugins = [
      ...(opts.plugins ?? []),
      ...adapters.flatMap((a) => (a.plugin ? [a.plugin] : [])),
    ];
    let admission = opts.admission;
    if (!admission) {
      const { admissionFromConfig } = await import('../moderation/index.ts');
      const moderation = await admissionFromConfig(config, logger);
      stops.push(() => moderation.close());
      admission = moderation;
    }
    let fanout: import('../relay/fanout.ts').JobFanout | undefined;
    if (config.REDIS_URL) {
      const { JobFanout } = await import('../relay/fanout.ts');
      const f = new JobFanout({
        redisUrl: config.REDIS_URL,
        prefix: config.REDIS_KEY_PREFIX,
        logger,
        maxImageBytes: config.PUSH_MAX_BYTES,
      });
      stops.push(() => f.close());
      await f.ready;
      fanout = f;
    }
    // Job states outlive this process: a restarted relay still knows the jobs it queued.
    const ledgerTtlMs =
      (config.JOB_TTL_SECONDS + 60 + config.RESULT_TTL_SECONDS) * 1000 +
      config.GENERATOR_TIMEOUT_MS;
    let ledger: JobLedger;
    if (config.REDIS_URL) {
      const { RedisJobLedger } = await import('../relay/redis-job-ledger.ts');
      ledger = new RedisJobLedger({
        redisUrl: config.REDIS_URL,
        prefix: config.REDIS_KEY_PREFIX,
        ttlMs: ledgerTtlMs,
        logger,
      });
    } else {
      const { LEDGER_FILE, SqliteJobLedger } = await import('../relay/job-ledger.ts');
      ledger = new SqliteJobLedger({
        file: resolve(join(config.DATA_DIR, LEDGER_FILE)),
        ttlMs: ledgerTtlMs,
        logger,
      });
    }
    stops.push(() => ledger.close());
    // Relay and worker in one process: the relay's /healthz and /metrics show the backends.
    const router = role === 'all' ? await routerOf(generator, config, opts) : undefined;
    const backends: BackendHealth | undefined = router && {
      status: () => router.status(),
      metrics: () => router.registry.metrics(),
    };
    const { buildRelay } = await import('../relay/app.ts');
    relay = await buildRelay({
      ledger,
      config,
      queue: queue.jobs,
      logger,
      generatorName: generator?.name ?? configuredGeneratorName(config),
      admission,
      deliverers,
      plugins,
      ...(fanout ? { fanout } : {}),
      ...(backends ? { backends } : {}),
    });
    const app = relay;
    // Closed on stop, and on a failed start from here on (the metrics listener is bound when
    // the relay is ready, before its own port is listened on).
    stops.unshift(async () => {
      // The embedded queue lives in this process: its jobs end with it. Say so to everyone
      // waiting (WebSockets, chat, the ledger a polling page reads after the restart).
      if (config.embedded) tellLostJobs(app);
      await app.close();
    });
    await relay.listen({ host: config.HOST, port: config.PORT });
    const address = relay.server.address();
    const port = typeof address === 'object' && address ? address.port : config.PORT;
    const shownHost = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
    url = `http://${shownHost}:${port}`;
    for (const adapter of adapters) {
      await adapter.start?.(app);
      if (adapter.stop) stops.unshift(() => adapter.stop!());
      logger.info({ adapter: adapter.name }, 'chat adapter started');
    }
  }

  let worker: RunningWorker | undefined;
  if (generator && (role === 'all' || role === 'worker')) {
    const port = relay ? (relay.server.address() as { port: number }).port : config.PORT;
    const relayUrl = config.RELAY_URL ?? `http://127.0.0.1:${port}`;
    const { consumer, maxAttempts } = await queue.consumer();
    const { startWorker } = await import('../worker/worker.ts');
    const { createNsfwClassifier } = await import('../worker/safety/classifier.ts');
    const { createInputFetcher } = await import('../worker/input-fetcher.ts');
    // Relay and worker in this process, with no RELAY_URL to push to: pushes are handed to the
    // relay here, checked as any push is, without loopback HTTP, signing and parsing.
    let pusher = opts.pusher;
    if (!pusher && relay && !config.RELAY_URL) {
      const { createInProcessPusher } = await import('./in-process-pusher.ts');
      pusher = createInProcessPusher(relay);
    }
    worker = startWorker({
      consumer,
      generator,
      relayUrl,
      secret: config.RELAY_SECRET,
      maxAttempts,
      maxImageBytes: config.PUSH_MAX_BYTES,
      progress: { intervalMs: config.PROGRESS_PUSH_MS, pollMs: config.CANCEL_POLL_MS },
      ...(pusher ? { pusher } : {}),
      logger,
      safety: {
        classifier:
          opts.classifier ??
          createNsfwClassifier({ model: config.SAFETY_MODEL, backend: config.SAFETY_BACKEND }),
        defaultPolicy: { mode: config.SAFETY, threshold: config.SAFETY_THRESHOLD },
      },
      fetchInput: createInputFetcher({
        relayUrl,
        hosts: parseHostList(config.INPUT_IMAGE_HOSTS),
        allowHttp: config.INPUT_IMAGE_ALLOW_HTTP,
        secret: config.RELAY_SECRET,
        maxBytes: config.INPUT_IMAGE_MAX_BYTES,
        timeoutMs: config.INPUT_IMAGE_TIMEOUT_MS,
        slackApiUrl: config.SLACK_API_URL,
        slackBotToken: config.SLACK_BOT_TOKEN,
      }),
    });
    const w = worker;
    // The worker stops first so no job is left half-pushed.
    stops.unshift(() => w.stop());
    if (role === 'worker' && config.METRICS_PORT !== undefined) {
      const { workerHealthListener } = await import('./worker-health.ts');
      const { listenMetrics } = await import('../relay/routes/health.ts');
      const listener = workerHealthListener(
        generator,
        config.METRICS_TOKEN,
        await routerOf(generator, config, opts),
      );
      await listenMetrics(listener, config.METRICS_PORT, config.HOST);
      stops.push(() => new Promise<void>((resolve) => listener.close(() => resolve())));
      logger.info({ port: config.METRICS_PORT }, 'worker health and metrics listener started');
    }
  }

  let stopped: Promise<void> | undefined;
  return {
    url,
    relay,
    worker,
    queueBackend: config.QUEUE_BACKEND,
    sqs: queue.sqs,
    stop() {
      stopped ??= stopAll();
      return stopped;
    },
  };
}

/**
 * The generator when it is a router over several backends (their health and metrics), else
 * undefined. Only GENERATORS (or a generator handed in) can make one, so only then is the
 * router's module (cockatiel, prom-client) loaded to ask.
 */
async function routerOf(
  generator: Generator | undefined,
  config: Readonly<Config>,
  opts: StartOptions,
): Promise<GeneratorRouter | undefined> {
  if (!generator || !(config.GENERATORS || opts.generator)) return undefined;
  const { GeneratorRouter } = await import('../worker/generators/router.ts');
  return generator instanceof GeneratorRouter ? generator : undefined;
}

/**
 * The name a generator built from this configuration has (`demo`, or the `GENERATORS` names
 * joined by `+`, as the router names itself), for a relay that does not build one.
 */
export function configuredGeneratorName(config: Readonly<Config>): string {
  return config.GENERATORS ? config.GENERATORS.map((b) => b.name).join('+') : config.GENERATOR;
}

/** Fail every unfinished job with a word: the embedded queue is going away with them. */
function tellLostJobs(app: FastifyInstance): void {
  const { tracker } = app.relay;
  for (const record of tracker.unfinished()) {
    tracker.apply(record.jobId, {
      state: 'failed',
      error: {
        code: 'QUEUE_UNAVAILABLE',
        message: 'imagine restarted and this job was lost with its queue; please try again',
      },
    });
  }
}

/** The queue a configuration names: where jobs go, and how a worker takes them. */
interface StartedQueue {
  jobs: JobQueue;
  /** A consumer, and the attempts a job gets before a retryable failure is final. */
  consumer(): Promise<{ consumer: JobConsumer; maxAttempts: number }>;
  sqs: Running['sqs'];
}

/** Connect to (or, embedded, start) the configured queue backend; its stops go on `stops`. */
async function startQueue(
  config: Readonly<Config>,
  logger: Logger,
  stops: Array<() => Promise<void>>,
): Promise<StartedQueue> {
  if (config.QUEUE_BACKEND === 'bullmq') {
    const { BullJobConsumer, BullJobQueue } = await import('../queue/bullmq.ts');
    const where = {
      redisUrl: config.REDIS_URL!,
      queueName: config.BULLMQ_QUEUE,
      prefix: `${config.REDIS_KEY_PREFIX}bull`,
    };
    const jobs = new BullJobQueue({
      ...where,
      attempts: config.BULLMQ_ATTEMPTS,
      backoffMs: config.BULLMQ_BACKOFF_SECONDS * 1000,
    });
    stops.push(() => jobs.close());
    logger.info({ queue: config.BULLMQ_QUEUE }, 'BullMQ queue on Redis');
    return {
      jobs,
      consumer: async () => ({
        consumer: new BullJobConsumer({
          ...where,
          concurrency: config.WORKER_CONCURRENCY,
          drainMs: config.WORKER_DRAIN_SECONDS * 1000,
          logger,
        }),
        maxAttempts: config.BULLMQ_ATTEMPTS,
      }),
      sqs: undefined,
    };
  }

  const { createSqsClient, readRedrivePolicy, SqsJobConsumer, SqsJobQueue } = await import(
    '../queue/sqs.ts'
  );
  let queueUrl: string;
  let deadLetterUrl = config.SQS_DLQ_URL;
  let client: SQSClient;
  /** The worker's long polls, embedded: a client of their own (see `receiveClient`). */
  let receiveClient: SQSClient | undefined;
  if (config.embedded) {
    const { startEmbeddedSqs } = await import('../queue/embedded-sqs.ts');
    const sqs = await startEmbeddedSqs({
      region: config.AWS_REGION,
      maxReceiveCount: config.SQS_MAX_RECEIVE_COUNT,
      visibilityTimeoutSeconds: config.SQS_VISIBILITY_TIMEOUT,
    });
    stops.push(sqs.stop);
    queueUrl = sqs.queueUrl;
    deadLetterUrl = sqs.deadLetterUrl;
    const embedded = {
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
      // In this process, on loopback, checking no signature: signing would be CPU for nothing.
      unsigned: true,
    };
    client = createSqsClient({ ...embedded, cacheMiddleware: true });
    receiveClient = createSqsClient(embedded);
    const receives = receiveClient;
    stops.push(async () => receives.destroy());
    logger.info({ endpoint: sqs.endpoint }, 'embedded SQS emulator (fauxqs) started');
  } else {
    queueUrl = config.SQS_QUEUE_URL!;
    client = createSqsClient({ region: config.AWS_REGION, endpoint: config.SQS_ENDPOINT });
  }
  const sqsClient = client;
  stops.push(async () => sqsClient.destroy());
  const sqs = { client, receiveClient: receiveClient ?? client, queueUrl, deadLetterUrl };
  return {
    jobs: new SqsJobQueue(client, queueUrl),
    consumer: async () => {
      // The queue's own redrive policy decides when a job goes to the dead-letter queue, so the
      // worker's "last attempt: tell the user" follows its maxReceiveCount; the setting is the
      // fallback for a queue without one (or whose attributes cannot be read).
      const policy = await readRedrivePolicy(sqsClient, queueUrl).catch((err) => {
        logger.warn({ err }, 'could not read the queue’s redrive policy');
        return {} as RedrivePolicy;
      });
      sqs.deadLetterUrl ??= policy.deadLetterUrl;
      const maxAttempts = policy.maxReceiveCount ?? config.SQS_MAX_RECEIVE_COUNT;
      if (policy.maxReceiveCount === undefined)
        logger.warn(
          { maxAttempts },
          'the job queue has no redrive maxReceiveCount: using SQS_MAX_RECEIVE_COUNT',
        );
      else if (policy.maxReceiveCount !== config.SQS_MAX_RECEIVE_COUNT && !config.embedded)
        logger.info(
          { maxAttempts, SQS_MAX_RECEIVE_COUNT: config.SQS_MAX_RECEIVE_COUNT },
          'the queue’s redrive maxReceiveCount decides the attempts',
        );
      const consumer = new SqsJobConsumer({
        client: sqsClient,
        queueUrl,
        deadLetterUrl: sqs.deadLetterUrl,
        concurrency: config.WORKER_CONCURRENCY,
        visibilityTimeoutSeconds: config.SQS_VISIBILITY_TIMEOUT,
        waitTimeSeconds: config.SQS_WAIT_SECONDS,
        drainMs: config.WORKER_DRAIN_SECONDS * 1000,
        // The embedded queue has this one consumer: jobs taken ahead (as many again as the slots)
        // wait here rather than in the queue, and one receive serves several of them. (Up to 10
        // ahead halved the receives but cost throughput in most alternating runs, CPU unchanged.)
        ...(config.embedded ? { prefetch: config.WORKER_CONCURRENCY } : {}),
        ...(receiveClient ? { receiveClient } : {}),
        logger,
      });
      return { consumer, maxAttempts };
    },
    sqs,
  };
}
