/**
 * The web client's address, its rate-limit identity. Behind a proxy the connection's address is
 * the proxy's, and X-Forwarded-For's left entries are whatever the client wrote: only what the
 * configured proxy itself vouches for counts (`TRUST_PROXY`).
 */
import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../contracts/config.ts';
import { header } from '../contracts/headers.ts';

/**
 * Fastify's `trustProxy` for a `TRUST_PROXY` setting: trust the nearest N hops (the socket's
 * peer is hop 0), never every hop. Fly's proxy is one hop.
 */
export function trustedHops(
  setting: Config['TRUST_PROXY'],
): false | ((address: string, hop: number) => boolean) {
  if (setting === false) return false;
  const hops = setting === 'fly' ? 1 : setting;
  return (_address, hop) => hop < hops;
}

/** The address a request came from, as far as the configured proxy vouches for it. */
export function clientAddress(request: FastifyRequest, setting: Config['TRUST_PROXY']): string {
  if (setting === 'fly') {
    // Fly's proxy sets Fly-Client-IP itself on every request it forwards.
    const fly = header(request, 'fly-client-ip')?.trim();
    if (fly && isIP(fly)) return fly;
  }
  return request.ip;
}
