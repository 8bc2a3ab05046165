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

/**
 * `ws://host/ws?jobId=` for the base a request is answered under, worked out once per base (a
 * configured PUBLIC_URL, or the few hosts a relay is reached by) instead of per request.
 */
function wsLinkPrefix(
  cache: Map<string, string>,
  request: FastifyRequest,
  configured: string | undefined,
): string {
  const key = configured ?? `${request.protocol}://${request.host}`;
  let prefix = cache.get(key);
  if (prefix === undefined) {
    const base = publicBase(request, configured);
    const ws = new URL('/ws', base);
    ws.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    prefix = `${ws.href}?jobId=`;
    // Host headers are the client's to write: a bounded cache, cleared when full.
    if (cache.size >= 64) cache.clear();
    cache.set(key, prefix);
  }
  return prefix;
}

/** The 202 answer, serialised from its schema (fast-json-stringify) rather than walked. */
export const QUEUED_SCHEMA = {
  type: 'object',
  properties: {
    jobId: { type: 'string' },
    ws: { type: 'string' },
    state: { type: 'string' },
    position: { type: 'integer' },
    seed: { type: 'integer' },
    width: { type: 'integer' },
    height: { type: 'integer' },
    status: { type: 'string' },
    image: { type: 'string' },
    generator: { type: 'string' },
    demo: { type: 'boolean' },
    notice: { type: 'string' },
    quota: {
      type: 'object',
      properties: {
        of: { type: 'string' },
        limit: { type: 'integer' },
        remaining: { type: 'integer' },
        windowSeconds: { type: 'integer' },
        resetSeconds: { type: 'integer' },
      },
      required: ['of', 'limit', 'remaining', 'windowSeconds', 'resetSeconds'],
    },
  },
  required: ['jobId', 'ws', 'state', 'position', 'seed', 'width', 'height', 'status', 'image'],
} as const;

export const enqueueRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const wsPrefixes = new Map<string, string>();
  app.post('/enqueue', { schema: { response: { 202: QUEUED_SCHEMA } } }, async (request, reply) => {
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
    const { job, position, quota } = submitted;
    const ws = wsLinkPrefix(wsPrefixes, request, relay.config.PUBLIC_URL) + job.jobId;
    return reply.status(202).send({
      jobId: job.jobId,
      ws,
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
      // What is left of the requester's images per window, as a 429's error.quota says it.
      ...(quota ? { quota } : {}),
    });
  });
};
