/**
 * The floor under `POST /enqueue` on this machine (started by `bench:cost enqueue`, as the relay
 * is, with the same probe): a bare Fastify server that parses the same JSON body and answers the
 * same-shaped 202, serialised from the relay's own response schema, and does nothing else (no validation, admission,
 * ledger or queue). What a relay spends above it is imagine's own work per enqueue.
 */
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { QUEUED_SCHEMA } from '../relay/routes/enqueue.ts';

const app = Fastify({ logger: false });
app.get('/healthz', async () => ({ ok: true }));
app.post('/enqueue', { schema: { response: { 202: QUEUED_SCHEMA } } }, async (request, reply) => {
  const body = request.body as { width?: number; height?: number };
  const jobId = randomBytes(18).toString('base64url');
  return reply.status(202).send({
    jobId,
    ws: `ws://${request.host}/ws?jobId=${jobId}`,
    state: 'queued',
    position: 0,
    seed: 1,
    width: body.width ?? 1024,
    height: body.height ?? 1024,
    status: `/jobs/${jobId}`,
    image: `/jobs/${jobId}/image`,
  });
});
await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT) });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
