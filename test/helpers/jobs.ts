/** A valid queued job, for tests of the queue and the worker. */
import { type Job, JobSchema, newJobId } from '../../contracts/job.ts';

/** A web job of `count` 64×64 images (seed 7, 4 steps), expiring in a minute. */
export function webJob(prompt = 'a fox in the snow', count?: number): Job {
  return JobSchema.parse({
    v: 1,
    jobId: newJobId(),
    prompt,
    ...(count === undefined ? {} : { count }),
    params: { width: 64, height: 64, seed: 7, steps: 4 },
    origin: { platform: 'web' },
    createdAt: Date.now(),
    expiresAt: Date.now() + 60_000,
  });
}
