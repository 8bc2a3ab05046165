/**
 * Connection hygiene for the relay's HTTP server: requests that never finish arriving are cut,
 * and errors a client causes (an aborted upload, a bad WebSocket frame) are logged at the level
 * they deserve, sampled, so a client cannot fill the log.
 */
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';

/**
 * Node calls the server's `timeout` listener when a socket was silent for `server.timeout`.
 * Cut it unless a complete request is being answered: a silent client while its headers or body
 * are still arriving (or between requests) holds memory for nothing, while a handler that takes
 * a while (a slow queue) must still be able to answer.
 */
export function cutIdleConnections(server: Server): void {
  server.on('timeout', (socket: Socket) => {
    const response = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    const answering = response?.req?.complete === true && !response.writableEnded;
    if (!answering) socket.destroy();
  });
}

/** Whether an error only says the client went away or broke the protocol (not our fault). */
export function isClientFault(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^(ECONNRESET|EPIPE|ECONNABORTED|ERR_STREAM_PREMATURE_CLOSE|WS_ERR_)/.test(code)) return true;
  return e?.message === 'aborted' || e?.message === 'Premature close';
}

/**
 * Logs each class of client-caused error at most once per `windowMs`, with how many of the
 * same class were left out since the last line. One bad frame per connection from many
 * connections then writes one line a minute, not one line each.
 */
export class SampledLog {
  readonly #log: FastifyBaseLogger;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #last = new Map<string, { at: number; skipped: number }>();

  constructor(log: FastifyBaseLogger, opts: { windowMs?: number; now?: () => number } = {}) {
    this.#log = log;
    this.#windowMs = opts.windowMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Log `msg` at `level` for class `key`, unless one of that class went out within the window. */
  write(
    level: 'debug' | 'info' | 'warn',
    key: string,
    fields: Record<string, unknown>,
    msg: string,
  ): void {
    const now = this.#now();
    const seen = this.#last.get(key);
    if (seen && now - seen.at < this.#windowMs) {
      seen.skipped++;
      return;
    }
    if (this.#last.size > 1000) this.#last.clear();
    this.#last.set(key, { at: now, skipped: 0 });
    this.#log[level]({ ...fields, ...(seen?.skipped ? { suppressed: seen.skipped } : {}) }, msg);
  }
}
