/** Reading request headers the one way every route needs. */
import type { FastifyRequest } from 'fastify';

/** A header's value; the first one when a client sent it more than once. */
export function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
