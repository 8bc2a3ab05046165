/** The web page at `/`, built from `web-preview/`. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

const root = fileURLToPath(new URL('../../web-preview/', import.meta.url));

export const pageRoutes: FastifyPluginAsync = async (app) => {
  const dir = existsSync(`${root}dist/index.html`) ? `${root}dist` : `${root}public`;
  await app.register(fastifyStatic, { root: dir, prefix: '/', index: ['index.html'] });
};
