/** `GET /healthz` and `GET /metrics` (guarded: a token, loopback only, or a listener of its own). */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { type BackendHealth, upscaleMaxSide } from '../../contracts/backends.ts';
import type { Config } from '../../contracts/config.ts';
import { ImagineError } from '../../contracts/errors.ts';
import type { RelayMetrics } from '../metrics.ts';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;
/** Headers a proxy adds: a loopback peer carrying them is relaying a stranger's request. */
const PROXY_HEADERS = ['x-forwarded-for', 'forwarded', 'fly-client-ip', 'x-real-ip'];

/** Whether a request may read the metrics (the same rule on both listeners). */
export function metricsAllowed(
  raw: IncomingMessage,
  token: string | undefined,
): 'ok' | 'MISSING_SIGNATURE' | 'FORBIDDEN' {
  if (token) {
    const given = /^Bearer (.+)$/i.exec(raw.headers.authorization ?? '')?.[1];
    if (!given) return 'MISSING_SIGNATURE';
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b) ? 'ok' : 'FORBIDDEN';
  }
  const direct = PROXY_HEADERS.every((h) => raw.headers[h] === undefined);
  return direct && LOOPBACK.test(raw.socket.remoteAddress ?? '') ? 'ok' : 'FORBIDDEN';
}

/** The relay's metrics, and the generator backends' when a routing worker runs beside it. */
async function metricsText(metrics: RelayMetrics, backends?: BackendHealth): Promise<string> {
  const own = await metrics.registry.metrics();
  return backends ? `${own}\n${await backends.metrics()}` : own;
}

/**
 * Listen on `METRICS_PORT`; a port that cannot be had is an error that says which setting to
 * change (not `PORT`'s message: this is the other listener).
 */
export async function listenMetrics(listener: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    listener.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'is already in use'
          : err.code === 'EACCES'
            ? 'is not allowed (set it above 1024)'
            : `cannot be listened on (${err.message})`;
      reject(
        new Error(`METRICS_PORT ${port} on ${host} ${why}; set METRICS_PORT to another port`, {
          cause: err,
        }),
      );
    });
    listener.listen(port, host, () => resolve());
  });
}

/** A listener serving only `GET /metrics` (for `METRICS_PORT`). */
export function metricsListener(
  metrics: RelayMetrics,
  token: string | undefined,
  backends?: BackendHealth,
): Server {
  return createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics')
      return send(404, JSON.stringify({ error: { code: 'NOT_FOUND', message: 'only /metrics' } }));
    const verdict = token ? metricsAllowed(req, token) : 'ok';
    if (verdict !== 'ok')
      return send(
        verdict === 'FORBIDDEN' ? 403 : 401,
        JSON.stringify({
          error: { code: verdict, message: 'send Authorization: Bearer <METRICS_TOKEN>' },
        }),
      );
    metricsText(metrics, backends).then(
      (text) => send(200, text, metrics.registry.contentType),
      () => send(503, JSON.stringify({ error: { code: 'INTERNAL', message: 'no metrics' } })),
    );
  });
}

export const healthRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const config: Readonly<Config> = relay.config;
  const started = Date.now();
  const upscaleLimit = upscaleMaxSide(config);
  app.get('/healthz', async () => ({
    ok: true,
    generator: relay.generator.name,
    demo: relay.generator.demo,
    queue:
      relay.config.QUEUE_BACKEND === 'bullmq'
        ? 'bullmq'
        : relay.config.embedded
          ? 'embedded-sqs'
          : 'sqs',
    uptimeSeconds: Math.round((Date.now() - started) / 1000),
    jobs: relay.tracker.size,
    queued: relay.tracker.queuedCount,
    websockets: relay.hub.openSockets,
    models: relay.config.MODELS,
    // The web page checks a chosen image against these before sending it or offering an upscale.
    inputImageMaxBytes: relay.config.INPUT_IMAGE_MAX_BYTES,
    maxImageSide: relay.config.LIMIT_IMAGE_SIDE,
    // The largest upscale this deployment's generators make (0: none upscales).
    upscaleMaxSide: upscaleLimit,
    ...(relay.backends ? { backends: relay.backends.status() } : {}),
  }));

  if (config.METRICS_PORT !== undefined) {
    const listener = metricsListener(relay.metrics, config.METRICS_TOKEN, relay.backends);
    listener.requestTimeout = config.HTTP_REQUEST_TIMEOUT_SECONDS * 1000;
    // Bound once the relay is built (onReady), so a port that cannot be had stops the start-up
    // with the reason: an onListen hook's error is only logged (the relay ran without metrics).
    const port = config.METRICS_PORT;
    app.addHook('onReady', async () => {
      await listenMetrics(listener, port, config.HOST);
      app.log.info({ port }, 'metrics listener started');
    });
    app.addHook('onClose', async () => {
      if (listener.listening) await new Promise((r) => listener.close(r));
    });
    return;
  }
  app.get('/metrics', async (request, reply) => {
    const verdict = metricsAllowed(request.raw, config.METRICS_TOKEN);
    if (verdict === 'MISSING_SIGNATURE')
      throw new ImagineError('MISSING_SIGNATURE', 'send Authorization: Bearer <METRICS_TOKEN>');
    if (verdict === 'FORBIDDEN')
      throw new ImagineError(
        'FORBIDDEN',
        config.METRICS_TOKEN
          ? 'wrong metrics token'
          : 'metrics are served to loopback only; set METRICS_TOKEN or METRICS_PORT to scrape them',
      );
    reply.header('content-type', relay.metrics.registry.contentType);
    reply.header('cache-control', 'no-store');
    return metricsText(relay.metrics, relay.backends);
  });
};
