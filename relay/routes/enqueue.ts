/** `POST /enqueue`: the web page's (and any HTTP client's) way in. */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { asImagineError, ImagineError } from '../../contracts/errors.ts';
import { clientAddress } from '../client-address.ts';

/** The public base URL of this relay as the client sees it. */
export function publicBase(request: FastifyRequest, configured: string | undefined): URL {
  if (configured) return new URL(configured);
  const host = request.host || 'localhost';
  return new URL(`${request.protocol}://${host}`);
}

export const enqueueRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  app.post('/enqueue', async (request, reply) => {
    if (!/^application\/json\b/i.test(request.headers['content-type'] ?? ''))
      throw new ImagineError('UNSUPPORTED_MEDIA_TYPE', 'send JSON: content-type application/json');
    let submitted: Awaited<ReturnType<typeof relay.submit>>;
    try {
      submitted = await relay.submit({
        request: request.body,
        origin: {
          platform: 'web',
          userId: clientAddress(request, relay.config.TRUST_PROXY),
          scopeId: 'web',
        },
      });
    } catch (err) {
      const e = asImagineError(err);
      if (
        e.statusCode === 429 ||
        e.statusCode === 503 ||
        e.statusCode === 422 ||
        e.statusCode === 403
      )
        relay.metrics.jobs.inc({ outcome: 'refused' });
      throw e;
    }
    const { job, position } = submitted;
    const base = publicBase(request, relay.config.PUBLIC_URL);
    const ws = new URL(`/ws?jobId=${job.jobId}`, base);
    ws.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    return reply.status(202).send({
      jobId: job.jobId,
      ws: ws.toString(),
      state: 'queued',
      position,
      seed: job.params.seed,
      width: job.params.width,
      height: job.params.height,
      status: `/jobs/${job.jobId}`,
      image: `/jobs/${job.jobId}/image`,
      generator: relay.generator.name,
      demo: relay.generator.demo,
      ...(relay.generator.demo ? { notice: 'demo generator: abstract art, not AI' } : {}),
    });
  });
};
