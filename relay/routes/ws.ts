/** `GET /ws?jobId=...`: a WebSocket that follows one job to its image. */
import type { FastifyPluginAsync } from 'fastify';
import { JOB_ID_PATTERN } from '../../contracts/job.ts';
import { lookupJob } from './jobs.ts';

export const wsRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const heartbeatMs = relay.config.WS_HEARTBEAT_SECONDS * 1000;
  const idleMs = relay.config.WS_IDLE_SECONDS * 1000;

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
      const jobId = request.query.jobId!;
      const record = relay.tracker.get(jobId);
      if (!record) {
        socket.close(4404, 'unknown job');
        return;
      }
      let alive = true;
      socket.on('pong', () => {
        alive = true;
      });
      // Clients only listen; anything they send is ignored (maxPayload caps abuse).
      socket.on('message', () => {});
      const heartbeat = setInterval(() => {
        if (!alive) {
          socket.terminate();
          return;
        }
        alive = false;
        socket.ping();
        const current = relay.tracker.get(jobId);
        if (!current || Date.now() - current.updatedAt > idleMs) socket.close(1001, 'idle');
      }, heartbeatMs);
      heartbeat.unref();
      socket.once('close', () => clearInterval(heartbeat));
      relay.hub.add(jobId, socket, record, relay.tracker.position(jobId));
    },
  );
};
