/**
 * The web page at `/`, built from `web-preview/` into `web-preview/dist` (`npm run build:web`).
 * Hashed files under `/assets/` are cached for a year; everything else is revalidated on each
 * visit, so a new build shows up at once. Every file carries a strict Content-Security-Policy.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

const root = fileURLToPath(new URL('../../web-preview/', import.meta.url));

/** The page's Content-Security-Policy: own scripts and styles only, images from blobs. */
export function pageContentSecurityPolicy(publicUrl: string | undefined): string {
  // `'self'` covers ws(s):// to the page's own host; a PUBLIC_URL elsewhere is listed too.
  const connect = ["'self'"];
  if (publicUrl) {
    const url = new URL(publicUrl);
    connect.push(url.origin, `${url.protocol === 'https:' ? 'wss:' : 'ws:'}//${url.host}`);
  }
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob:",
    `connect-src ${connect.join(' ')}`,
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ].join('; ');
}

export const pageRoutes: FastifyPluginAsync = async (app) => {
  const built = existsSync(`${root}dist/index.html`);
  const csp = pageContentSecurityPolicy(app.relay.config.PUBLIC_URL);
  if (!built) app.log.warn('web page not built; serving a placeholder (run `npm run build:web`)');
  await app.register(fastifyStatic, {
    root: built ? `${root}dist` : `${root}public`,
    prefix: '/',
    index: ['index.html'],
    cacheControl: false,
    setHeaders: (reply, path) => {
      const hashed = built && /[\\/]assets[\\/][^\\/]+-[A-Z0-9]{8,}\.[a-z0-9.]+$/i.test(path);
      reply.header('cache-control', hashed ? 'public, max-age=31536000, immutable' : 'no-cache');
      reply.header('content-security-policy', csp);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('cross-origin-opener-policy', 'same-origin');
      reply.header('cross-origin-resource-policy', 'same-origin');
      reply.header('x-frame-options', 'DENY');
    },
  });
};
