/**
 * The relay: `buildRelay(deps)` returns a ready Fastify instance (tests call `inject()` or
 * listen on 127.0.0.1:0); the entry point only listens.
 */
import websocket from '@fastify/websocket';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { type BackendHealth, backendCapability, upscaleMaxSide } from '../contracts/backends.ts';
import type { Config } from '../contracts/config.ts';
import { ERROR_CODES, type ErrorCode, ImagineError } from '../contracts/errors.ts';
import { parseHostList } from '../contracts/input-url.ts';
import { imageSeed } from '../contracts/limits.ts';
import { isTerminal } from '../contracts/push.ts';
import type { JobQueue } from '../queue/queue.ts';
import type { FrontDoor } from '../submit/front-door.ts';
import { type AdmissionPolicy, createSubmitter, type Submitter } from '../submit/submit.ts';
import { cancelJob } from './cancel.ts';
import { trustedHops } from './client-address.ts';
import { coalesce } from './coalesce.ts';
import { cutIdleConnections, isClientFault, SampledLog } from './connection-limits.ts';
import { type ChatDeliverer, ChatDelivery } from './delivery.ts';
import type { JobFanout } from './fanout.ts';
import { type JobLedger, ledgerEntryOf } from './job-ledger.ts';
import { type JobRecord, JobTracker, type JobUpdate, type ProgressUpdate } from './job-tracker.ts';
import { createMetrics, type RelayMetrics } from './metrics.ts';
import { registerOriginPolicy } from './origins.ts';
import { MemoryReviewDesk } from './review-desk.ts';
import { enqueueRoutes } from './routes/enqueue.ts';
import { healthRoutes } from './routes/health.ts';
import { inputRoutes } from './routes/inputs.ts';
import { jobRoutes } from './routes/jobs.ts';
import { pageRoutes } from './routes/page.ts';
import { pushRoutes } from './routes/push.ts';
import { websocketOptions, wsRoutes } from './routes/ws.ts';
import { WaiterHub } from './ws-hub.ts';

/** What the relay is built from. Defaults are filled in at the entry point only. */
export interface RelayDeps {
  config: Readonly<Config>;
  queue: JobQueue;
  logger: Logger;
  /** Moderation and limits (a no-op policy when absent). */
  admission?: AdmissionPolicy;
  /** Chat platforms to deliver to. */
  deliverers?: ChatDeliverer[];
  /** Extra plugins (chat receivers) registered after the core routes. */
  plugins?: FastifyPluginAsync[];
  /** Name of the generator the workers run, shown to users ("demo" is labelled as such). */
  generatorName?: string;
  /** Job events shared with other relay instances (Redis pub/sub); closed with the app. */
  fanout?: JobFanout;
  /** Health of the generator backends, when a worker routing over several runs in this process. */
  backends?: BackendHealth;
  /** Job states that outlive this process (Redis or SQLite); closed with the app. */
  ledger?: JobLedger;
}

/** Shared state decorated onto the instance. */
export interface RelayState {
  config: Readonly<Config>;
  tracker: JobTracker;
  hub: WaiterHub;
  delivery: ChatDelivery;
  metrics: RelayMetrics;
  submit: Submitter;
  admission: AdmissionPolicy | undefined;
  generator: { name: string; demo: boolean };
  /** Fan-out between relay instances, when configured. */
  fanout: JobFanout | undefined;
  /** Generator backends of the worker in this process, when it routes over several. */
  backends: BackendHealth | undefined;
  /** Images held for moderator review (this instance's memory). */
  reviews: MemoryReviewDesk;
  /** Job states that outlive this process, when configured. */
  ledger: JobLedger | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    relay: RelayState;
  }
}

/** Map Fastify's own error codes onto ours. */
function fastifyErrorCode(err: { code?: string; statusCode?: number }): ErrorCode | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'PAYLOAD_TOO_LARGE';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'INVALID_JSON';
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'BAD_REQUEST';
    default:
      if (err.statusCode === 413) return 'PAYLOAD_TOO_LARGE';
      if (err.statusCode === 415) return 'UNSUPPORTED_MEDIA_TYPE';
      if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return 'BAD_REQUEST';
      return undefined;
  }
}

/** Build the relay. */
export async function buildRelay(deps: RelayDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; typing it so keeps the instance type plain.
    loggerInstance: deps.logger as FastifyBaseLogger,
    trustProxy: trustedHops(config.TRUST_PROXY),
    bodyLimit: 64 * 1024,
    requestIdHeader: 'x-request-id',
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // The router's own refusals (an over-long or undecodable path parameter) in our coded shape.
    frameworkErrors: (err, _request, reply) => {
      void (reply as unknown as FastifyReply).status(400).send({
        error: {
          code: 'BAD_REQUEST',
          message:
            err.code === 'FST_ERR_MAX_PARAM_LENGTH'
              ? 'a path parameter is too long'
              : 'the path is not a valid URL',
        },
      });
    },
    // Node's defaults are "never": a client could hold a connection (and a half-sent body) open
    // for good. The whole request must arrive within requestTimeout (checked every second), and
    // a connection silent for connectionTimeout is cut unless its request is being answered.
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_SECONDS * 1000,
    connectionTimeout: config.HTTP_IDLE_TIMEOUT_SECONDS * 1000,
    keepAliveTimeout: Math.min(config.HTTP_IDLE_TIMEOUT_SECONDS * 1000, 72_000),
    // Node only honours these when the server is created with them (setting them later leaves
    // headersTimeout at 60 s, above requestTimeout, and nothing is cut).
    http: {
      connectionsCheckingInterval: 1000,
      requestTimeout: config.HTTP_REQUEST_TIMEOUT_SECONDS * 1000,
      headersTimeout: config.HTTP_REQUEST_TIMEOUT_SECONDS * 1000,
    },
  });
  cutIdleConnections(app.server);
  const clientFaults = new SampledLog(app.log);

  const generatorName = deps.generatorName ?? config.GENERATOR;
  const tracker = new JobTracker({
    resultTtlMs: config.RESULT_TTL_SECONDS * 1000,
    maxBufferedBytes: config.RESULT_BUFFER_BYTES,
    jobTtlMs: (config.JOB_TTL_SECONDS + 60) * 1000 + config.GENERATOR_TIMEOUT_MS,
  });
  const generator = { name: generatorName, demo: generatorName === 'demo' };
  const hub = new WaiterHub(generator);
  const delivery = new ChatDelivery(config.RELAY_SECRET, deps.logger, generatorName);
  for (const d of deps.deliverers ?? []) delivery.register(d);
  delivery.attach(tracker);
  const metrics = createMetrics({
    bufferedBytes: () => tracker.bufferedBytes,
    openSockets: () => hub.openSockets,
  });
  const submit = createSubmitter({
    queue: deps.queue,
    registry: tracker,
    secret: config.RELAY_SECRET,
    defaultSteps: config.DEFAULT_STEPS,
    jobTtlSeconds: config.JOB_TTL_SECONDS,
    models: config.MODELS,
    upscaleMaxSide: upscaleMaxSide(config),
    ...(config.GENERATORS
      ? { backends: config.GENERATORS.map((spec) => backendCapability(spec, config)) }
      : {}),
    inputPolicy: {
      hosts: parseHostList(config.INPUT_IMAGE_HOSTS),
      allowHttp: config.INPUT_IMAGE_ALLOW_HTTP,
      secret: config.RELAY_SECRET,
    },
    logger: deps.logger,
    ...(deps.admission ? { admission: deps.admission } : {}),
  });

  tracker.on('update', ({ record, position, remote }: JobUpdate) => {
    hub.publish(record, position);
    // The instance a change came from records it (with Redis, every relay reads the same ledger).
    if (!remote)
      deps.ledger?.remember(ledgerEntryOf(record as JobRecord & Record<string, unknown>));
    // A cancelled job's counts go back where it was admitted, wherever the cancel came in: only
    // the admitting instance holds them, so every instance offers.
    if (record.state === 'cancelled' && record.cancelledBeforeStart)
      deps.admission?.cancelledBeforeStart?.(record.jobId);
    // Counted, and the admission slot released, on the instance the change came from.
    if (remote) return;
    if (record.state === 'queued') metrics.jobs.inc({ outcome: 'queued' });
    if (isTerminal(record.state)) {
      metrics.jobs.inc({ outcome: record.state });
      deps.admission?.finished(record.jobId);
    }
  });
  tracker.on('progress', ({ record, progress }: ProgressUpdate) =>
    hub.publishProgress(record, progress),
  );
  // Waiters whose job moved up are told, at most every 250 ms: a pass over the waiters, each
  // position found without a scan of the queue (JobTracker.position).
  const broadcastPositions = coalesce(
    () => hub.publishPositions((jobId) => tracker.position(jobId)),
    250,
  );
  tracker.on('positions', broadcastPositions);
  deps.fanout?.attach(tracker);
  tracker.start();
  app.addHook('onClose', async () => {
    broadcastPositions.cancel();
    tracker.stop();
    await deps.fanout?.close();
    await deps.ledger?.close();
    await delivery.drain();
  });

  const reviews = new MemoryReviewDesk({
    ttlMs: config.SAFETY_REVIEW_TTL_SECONDS * 1000,
    maxBytes: config.SAFETY_REVIEW_MAX_BYTES,
    delivery,
    metrics,
    admission: deps.admission,
    logger: deps.logger.child({ part: 'review' }),
  });
  app.decorate('relay', {
    config,
    tracker,
    hub,
    delivery,
    metrics,
    submit,
    admission: deps.admission,
    generator,
    fanout: deps.fanout,
    backends: deps.backends,
    reviews,
    ledger: deps.ledger,
  } satisfies RelayState);
  const relayState = app.relay;
  app.decorate('frontDoor', {
    submit,
    admission: deps.admission,
    generator,
    reviews,
    results: {
      image(jobId, index) {
        const record = tracker.get(jobId);
        const image = record?.images?.[index];
        if (!record || !image) return undefined;
        return {
          bytes: image.bytes,
          contentType: image.contentType,
          seed: image.info.seed ?? imageSeed(record.seed ?? 0, index),
          width: image.info.width ?? record.width ?? 0,
          height: image.info.height ?? record.height ?? 0,
          ...(record.spoilers?.[index] ? { spoiler: true } : {}),
        };
      },
    },
    cancel: (jobId, requester) => cancelJob(relayState, jobId, requester),
  } satisfies FrontDoor);

  app.setErrorHandler((err, request, reply) => {
    if (err instanceof ImagineError) {
      if (err.retryAfterSeconds !== undefined)
        reply.header('retry-after', String(err.retryAfterSeconds));
      return reply.status(err.statusCode).send(err.toBody());
    }
    const e = err as { code?: string; statusCode?: number; message: string };
    if (isClientFault(err) || request.raw.destroyed) {
      // The client went away mid-request (an aborted upload): nothing to answer, nothing wrong.
      clientFaults.write(
        'debug',
        `http:${e.code ?? e.message}`,
        { url: request.url.split('?')[0], code: e.code },
        'client aborted the request',
      );
      return reply.status(400).send({ error: { code: 'BAD_REQUEST', message: 'request aborted' } });
    }
    const code = fastifyErrorCode(e);
    if (code) {
      return reply.status(ERROR_CODES[code]).send({ error: { code, message: e.message } });
    }
    request.log.error({ err }, 'unhandled error');
    return reply.status(500).send({ error: { code: 'INTERNAL', message: 'internal error' } });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      error: {
        code: 'NOT_FOUND',
        message: `no route ${request.method} ${request.url.split('?')[0]}`,
      },
    }),
  );

  // A bad frame (or a client vanishing) ends that one connection; it is the client's fault, so
  // it is logged at info, once per class a minute, never once per frame or connection.
  const onSocketError = (err: Error, socket: WebSocket) => {
    const e = err as { code?: string; message: string };
    if (isClientFault(err))
      clientFaults.write(
        'info',
        `ws:${e.code ?? e.message}`,
        { code: e.code, reason: e.message, url: '/ws' },
        'websocket closed: client error',
      );
    else app.log.warn({ err }, 'websocket error');
    socket.terminate();
  };
  await app.register(websocket, websocketOptions(hub, onSocketError));
  await registerOriginPolicy(app, config);
  await app.register(healthRoutes);
  await app.register(enqueueRoutes);
  await app.register(jobRoutes);
  await app.register(inputRoutes);
  await app.register(wsRoutes, { onSocketError });
  await app.register(pushRoutes);
  await app.register(pageRoutes);
  for (const plugin of deps.plugins ?? []) await app.register(plugin);
  await app.ready();
  return app;
}
