/** Polling fallback: `GET /jobs/:jobId` (state) and `GET /jobs/:jobId/image` (bytes). */
import type { FastifyPluginAsync } from 'fastify';
import { ImagineError } from '../../contracts/errors.ts';
import { extensionFor } from '../../contracts/image-types.ts';
import { JOB_ID_PATTERN } from '../../contracts/job.ts';
import type { RelayState } from '../app.ts';
import type { JobRecord } from '../job-tracker.ts';

/**
 * How long a relay with fan-out waits for the event announcing a job it does not know yet: a
 * client may reach this instance just before the event from the instance that queued the job.
 */
export const FANOUT_GRACE_MS = 2000;

/**
 * A job's record: from memory, else from the ledger (a job queued before a restart, or through
 * another relay), else, with fan-out, after a brief wait for the event announcing it.
 */
export async function lookupJob(
  relay: Pick<RelayState, 'tracker' | 'fanout' | 'ledger'>,
  jobId: string,
): Promise<JobRecord | undefined> {
  const known = relay.tracker.get(jobId) ?? (await recallJob(relay, jobId));
  if (known || !relay.fanout) return known;
  return relay.tracker.whenKnown(jobId, FANOUT_GRACE_MS);
}

/** Learn a job this instance has no record of from the ledger, if it remembers one. */
export async function recallJob(
  relay: Pick<RelayState, 'tracker' | 'ledger'>,
  jobId: string,
): Promise<JobRecord | undefined> {
  const entry = await relay.ledger?.recall(jobId);
  return entry ? relay.tracker.recall(entry) : undefined;
}

/** Look a job up by id from a URL parameter, or throw the right 4xx. */
export async function findJob(
  lookup: (id: string) => JobRecord | undefined | Promise<JobRecord | undefined>,
  jobId: string,
): Promise<JobRecord> {
  if (!JOB_ID_PATTERN.test(jobId)) throw new ImagineError('INVALID_JOB_ID', 'job id is malformed');
  const record = await lookup(jobId);
  if (!record)
    throw new ImagineError(
      'JOB_NOT_FOUND',
      'no such job (it may have finished more than a few minutes ago)',
    );
  return record;
}

/** The image index of a `?i=` query: 0-based, absent means the first. */
function imageIndex(raw: unknown): number {
  if (raw === undefined) return 0;
  if (typeof raw !== 'string' || !/^[0-9]$/.test(raw))
    throw new ImagineError('BAD_REQUEST', 'i must be an image index, 0 to 3');
  return Number(raw);
}

export const jobRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const lookup = (id: string) => lookupJob(relay, id);

  app.get<{ Params: { jobId: string } }>('/jobs/:jobId', async (request, reply) => {
    const r = await findJob(lookup, request.params.jobId);
    const expired = r.state === 'done' && !r.images;
    reply.header('cache-control', 'no-store');
    const first = r.images?.[0];
    return {
      jobId: r.jobId,
      state: expired ? 'expired' : r.state,
      ...(r.state === 'queued' ? { position: relay.tracker.position(r.jobId) ?? 0 } : {}),
      task: r.task ?? 'generate',
      count: r.count ?? 1,
      seed: r.seed,
      width: r.width,
      height: r.height,
      ...(r.error ? { error: r.error } : {}),
      ...(expired
        ? { error: { code: 'JOB_EXPIRED', message: 'the image is no longer held' } }
        : {}),
      ...(first && r.images
        ? {
            contentType: first.contentType,
            bytes: first.size,
            image: `/jobs/${r.jobId}/image`,
            ...(r.spoilers?.[0] ? { spoiler: true } : {}),
            ...(r.withheld ? { withheld: r.withheld } : {}),
            images: r.images.map((image, i) => ({
              index: i,
              contentType: image.contentType,
              bytes: image.size,
              seed: image.info.seed,
              width: image.info.width,
              height: image.info.height,
              url: `/jobs/${r.jobId}/image?i=${i}`,
              ...(r.spoilers?.[i] ? { spoiler: true } : {}),
            })),
          }
        : {}),
      generationMs: r.generationMs,
      generator: r.generator ?? relay.generator.name,
      demo: (r.generator ?? relay.generator.name) === 'demo',
    };
  });

  app.get<{ Params: { jobId: string }; Querystring: { i?: string } }>(
    '/jobs/:jobId/image',
    async (request, reply) => {
      const index = imageIndex(request.query.i);
      const r = await findJob(lookup, request.params.jobId);
      if (r.state === 'failed')
        throw new ImagineError('JOB_FAILED', r.error?.message ?? 'the job failed');
      if (r.state === 'expired' || (r.state === 'done' && !r.images))
        throw new ImagineError('JOB_EXPIRED', 'the job expired or its image is no longer held');
      if (!r.images)
        throw new ImagineError('NOT_READY', `the job is ${r.state}; try again shortly`);
      const image = r.images[index];
      if (!image)
        throw new ImagineError(
          'NOT_FOUND',
          `the job made ${r.images.length} image${r.images.length === 1 ? '' : 's'}; i is 0 to ${r.images.length - 1}`,
        );
      const seed = image.info.seed ?? r.seed ?? r.jobId;
      return reply
        .header('content-type', image.contentType)
        .header('cache-control', 'private, max-age=300')
        .header(
          'content-disposition',
          `inline; filename="imagine-${seed}.${extensionFor(image.contentType)}"`,
        )
        .header('x-content-type-options', 'nosniff')
        .send(image.bytes);
    },
  );
};
