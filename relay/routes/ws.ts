/**
 * `GET /ws?jobId=...`: a WebSocket that follows one job to its image.
 *
 * The upgrade goes through Fastify like any request (the origin policy, the jobId checks and
 * their 4xx answers), then keeps nothing of it: an idle socket costs ws's objects and the TCP
 * socket, not the request's as well (see `releaseUpgrade`).
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { WebsocketPluginOptions } from '@fastify/websocket';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { JOB_ID_PATTERN } from '../../contracts/job.ts';
import type { WaiterHub } from '../ws-hub.ts';
import { WaiterSocket } from '../ws-hub.ts';
import { lookupJob } from './jobs.ts';

type WsOptions = NonNullable<WebsocketPluginOptions['options']>;

/** What the relay does with an error on an open socket (log it as it deserves; cut the socket). */
export type SocketErrorHandler = (err: Error, socket: WebSocket) => void;

/**
 * `@fastify/websocket`'s options for the relay: ws builds {@link WaiterSocket}s, tracks no
 * clients of its own (the hub does, and closes them on shutdown), and compresses nothing
 * (permessage-deflate would hold zlib state per socket; images do not compress).
 */
export function websocketOptions(
  hub: WaiterHub,
  onError: SocketErrorHandler,
): WebsocketPluginOptions {
  return {
    options: {
      maxPayload: 4096,
      perMessageDeflate: false,
      clientTracking: false,
      // ws's types want the module's statics on the class; it only ever calls `new` on it.
      WebSocket: WaiterSocket as unknown as WsOptions['WebSocket'],
    },
    errorHandler: (err, socket) => onError(err, socket),
    preClose(done) {
      hub.closeAll();
      this.websocketServer.close();
      done();
    },
  };
}

/**
 * Let go of what the upgrade left reachable from an open socket: the `ServerResponse` the
 * plugin assigned to the TCP socket (and through it the `IncomingMessage`, Fastify's request and
 * reply and their logger), and the plugin's per-socket error listener (a closure over the
 * request and reply), replaced by one shared listener. About 3 KB per idle socket.
 */
function releaseUpgrade(
  request: FastifyRequest,
  socket: WebSocket,
  onError: (this: WebSocket, err: Error) => void,
): void {
  const tcp = request.raw.socket as Socket & { _httpMessage?: ServerResponse | null };
  tcp._httpMessage?.detachSocket(tcp);
  socket.removeAllListeners('error');
  socket.on('error', onError);
}

export const wsRoutes: FastifyPluginAsync<{ onSocketError: SocketErrorHandler }> = async (
  app,
  opts,
) => {
  const { relay } = app;
  const heartbeatMs = relay.config.WS_HEARTBEAT_SECONDS * 1000;
  const idleMs = relay.config.WS_IDLE_SECONDS * 1000;
  // ws calls an 'error' listener with the socket as `this`.
  const onSocketError = function (this: WebSocket, err: Error) {
    opts.onSocketError(err, this);
  };

  // One heartbeat for every socket, not a timer each.
  const heartbeat = setInterval(() => {
    const now = Date.now();
    relay.hub.sweep((jobId) => {
      const current = relay.tracker.get(jobId);
      return !current || now - current.updatedAt > idleMs;
    });
  }, heartbeatMs);
  heartbeat.unref();
  app.addHook('onClose', async () => clearInterval(heartbeat));

  app.get<{ Querystring: { jobId?: string } }>(
    '/ws',
    {
      websocket: true,
      // Answer bad requests with a plain 4xx before upgrading.
      preValidation: async (request, reply) => {
        const jobId = request.query.jobId;
        if (!jobId || !JOB_ID_PATTERN.test(jobId))
          return reply.status(400).send({
            error: {
              code: 'INVALID_JOB_ID',
              message: 'jobId query parameter is missing or malformed',
            },
          });
        if (!(await lookupJob(relay, jobId)))
          return reply
            .status(404)
            .send({ error: { code: 'JOB_NOT_FOUND', message: 'no such job' } });
        if (!request.ws)
          return reply.status(426).send({
            error: {
              code: 'BAD_REQUEST',
              message: 'this endpoint speaks WebSocket; use GET /jobs/:jobId to poll',
            },
          });
      },
    },
    (socket, request) => {
      releaseUpgrade(request, socket, onSocketError);
      const record = relay.tracker.get(request.query.jobId!);
      if (!record) {
        socket.close(4404, 'unknown job');
        return;
      }
      // Clients only listen; what they send is read and dropped (maxPayload caps abuse).
      relay.hub.add(socket as WaiterSocket, record, relay.tracker.position(record.jobId));
    },
  );
};
