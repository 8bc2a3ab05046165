/**
 * What a worker running on its own (`ROLE=worker`) knows about its generator backends, on
 * `METRICS_PORT`: `GET /healthz` (each backend's state and latency) and `GET /metrics` (the
 * per-backend metrics), under the same token rule as the relay's metrics listener.
 */
import { createServer, type Server } from 'node:http';
import { metricsAllowed } from '../relay/routes/health.ts';
import type { Generator } from '../worker/generator.ts';
import type { GeneratorRouter } from '../worker/generators/router.ts';

/**
 * A listener for a worker's health and backend metrics: `router` is the generator when it
 * routes over several backends (a single backend has no per-backend health or metrics).
 */
export function workerHealthListener(
  generator: Generator,
  token: string | undefined,
  router?: GeneratorRouter,
): Server {
  const started = Date.now();
  return createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const path = req.url?.split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/healthz'))
      return send(
        404,
        JSON.stringify({ error: { code: 'NOT_FOUND', message: 'only /healthz and /metrics' } }),
      );
    const verdict = token ? metricsAllowed(req, token) : 'ok';
    if (verdict !== 'ok')
      return send(
        verdict === 'FORBIDDEN' ? 403 : 401,
        JSON.stringify({
          error: { code: verdict, message: 'send Authorization: Bearer <METRICS_TOKEN>' },
        }),
      );
    if (path === '/healthz')
      return send(
        200,
        JSON.stringify({
          ok: true,
          role: 'worker',
          generator: generator.name,
          uptimeSeconds: Math.round((Date.now() - started) / 1000),
          ...(router ? { backends: router.status() } : {}),
        }),
      );
    if (!router) return send(200, '', 'text/plain; version=0.0.4; charset=utf-8');
    router.registry.metrics().then(
      (text) => send(200, text, router.registry.contentType),
      () => send(503, JSON.stringify({ error: { code: 'INTERNAL', message: 'no metrics' } })),
    );
  });
}
