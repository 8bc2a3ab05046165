/**
 * Which browser origins may use the API: CORS headers for `ALLOWED_ORIGINS`, and a refusal
 * for `POST /enqueue` and WebSocket upgrades that carry any other `Origin`. With no list,
 * only the page's own origin is allowed (`PUBLIC_URL`'s origin, or the request's own host).
 * Requests without an `Origin` header (curl, workers, chat platforms) are not browsers and
 * pass untouched.
 */
import cors from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ErrorBody } from '../contracts/errors.ts';

/** A parsed `ALLOWED_ORIGINS`. */
export interface AllowedOrigins {
  /** `*` was listed: every origin is allowed. */
  any: boolean;
  /** Normalised origins (`scheme://host[:port]`). */
  origins: ReadonlySet<string>;
}

/** Routes a browser from a foreign origin must not drive (they start work or hold a socket). */
const GUARDED_ROUTES: ReadonlySet<string> = new Set([
  '/enqueue',
  '/ws',
  '/uploads',
  '/jobs/:jobId/image-link',
]);

/** Parse the comma-separated `ALLOWED_ORIGINS`; a malformed entry throws naming it. */
export function parseAllowedOrigins(value: string | undefined): AllowedOrigins {
  const origins = new Set<string>();
  let any = false;
  for (const raw of (value ?? '').split(',')) {
    const entry = raw.trim();
    if (!entry) continue;
    if (entry === '*') {
      any = true;
      continue;
    }
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw new Error(`ALLOWED_ORIGINS: "${entry}" is not an origin like https://example.com`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new Error(`ALLOWED_ORIGINS: "${entry}" must start with http:// or https://`);
    origins.add(url.origin);
  }
  return { any, origins };
}

/** The origin the page itself is served from, as the browser sees it. */
export function ownOrigin(request: FastifyRequest, publicUrl: string | undefined): string {
  if (publicUrl) return new URL(publicUrl).origin;
  try {
    return new URL(`${request.protocol}://${request.host}`).origin;
  } catch {
    return '';
  }
}

/** Decide whether a request's `Origin` may use the API. */
export function isOriginAllowed(
  origin: string,
  request: FastifyRequest,
  allowed: AllowedOrigins,
  publicUrl: string | undefined,
): boolean {
  if (allowed.any) return true;
  if (allowed.origins.has(origin)) return true;
  return origin === ownOrigin(request, publicUrl);
}

/**
 * Install CORS and the Origin refusal on the root instance. Register it after
 * `@fastify/websocket`, whose hooks close the socket of an upgrade refused here.
 */
export async function registerOriginPolicy(
  app: FastifyInstance,
  config: { ALLOWED_ORIGINS?: string | undefined; PUBLIC_URL?: string | undefined },
): Promise<void> {
  const allowed = parseAllowedOrigins(config.ALLOWED_ORIGINS);
  const check = (request: FastifyRequest): boolean => {
    const origin = request.headers.origin;
    return origin === undefined || isOriginAllowed(origin, request, allowed, config.PUBLIC_URL);
  };

  await app.register(cors, {
    delegator: (request, callback) => {
      const origin = request.headers.origin;
      callback(null, {
        origin: origin !== undefined && check(request) ? origin : false,
        methods: ['GET', 'HEAD', 'POST'],
        allowedHeaders: ['content-type'],
        exposedHeaders: ['retry-after'],
        maxAge: 600,
      });
    },
  });

  app.addHook('onRequest', async (request, reply) => {
    if (!GUARDED_ROUTES.has(request.routeOptions.url ?? '') || check(request)) return;
    const body: ErrorBody = {
      error: {
        code: 'ORIGIN_NOT_ALLOWED',
        message: `requests from ${request.headers.origin} are not allowed; add it to ALLOWED_ORIGINS`,
      },
    };
    return reply.status(403).header('cache-control', 'no-store').send(body);
  });
}
