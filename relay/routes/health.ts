/** `GET /healthz` and `GET /metrics`. */
import type { FastifyPluginAsync } from 'fastify';

export const healthRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const started = Date.now();
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
  }));
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', relay.metrics.registry.contentType);
    return relay.metrics.registry.metrics();
  });
};
