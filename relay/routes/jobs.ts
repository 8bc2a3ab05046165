/**
 * Polling fallback: `GET /jobs/:jobId` (state) and `GET /jobs/:jobId/image` (bytes); and
 * `DELETE /jobs/:jobId` (cancel).
 */
import type { FastifyPluginAsync } from 'fastify';
import { ImagineError } from '../../contracts/errors.ts';
import { extensionFor } from '../../contracts/image-types.ts';
import { JOB_ID_PATTERN } from '../../contracts/job.ts';
import { cancelJob } from '../cancel.ts';
import { lookupJob } from '../job-lookup.ts';
import type { JobRecord } from '../job-tracker.ts';

export { FANOUT_GRACE_MS, lookupJob, recallJob } from '../job-lookup.ts';

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

  // Cancel: the job id is the capability (as for following it). 200 cancelled; 409 when it had
  // already ended (nothing changed); 404 unknown; 400 malformed.
  app.delete<{ Params: { jobId: string } }>('/jobs/:jobId', async (request, reply) => {
    const { jobId } = request.params;
    if (!JOB_ID_PATTERN.test(jobId))
      throw new ImagineError('INVALID_JOB_ID', 'job id is malformed');
    const result = await cancelJob(relay, jobId);
    reply.header('cache-control', 'no-store');
    switch (result.outcome) {
      case 'cancelled':
        request.log.info({ jobId }, 'job cancelled');
        return { jobId, state: 'cancelled' };
      case 'already-finished':
        return reply.status(409).send({
          ...new ImagineError(
            'ALREADY_FINISHED',
            `the job had already ended (${result.state}); nothing was cancelled`,
          ).toBody(),
          state: result.state,
        });
      case 'unknown':
      case 'not-allowed':
        throw new ImagineError(
          'JOB_NOT_FOUND',
          'no such job (it may have finished more than a few minutes ago)',
        );
    }
  });

  app.get<{ Params: { jobId: string }; Querystring: { i?: string } }>(
    '/jobs/:jobId/image',
    async (request, reply) => {
      const index = imageIndex(request.query.i);
      const r = await findJob(lookup, request.params.jobId);
      if (r.state === 'failed')
        throw new ImagineError('JOB_FAILED', r.error?.message ?? 'the job failed');
      if (r.state === 'cancelled')
        throw new ImagineError('JOB_CANCELLED', 'the job was cancelled; it made no image');
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
