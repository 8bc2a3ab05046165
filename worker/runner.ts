/**
 * Runs one job: report "generating", call the generator, push the image or the failure.
 * Retryable failures are thrown so the queue redelivers, except on the last attempt, when the
 * user is told instead: no job dies without a word.
 */
import type { Logger } from 'pino';
import { asImagineError, ImagineError, isRetryable } from '../contracts/errors.ts';
import { type Job, jobSeeds } from '../contracts/job.ts';
import type { Generator } from './generator.ts';
import type { RelayPusher } from './push-client.ts';

/** Options of {@link createJobRunner}. */
export interface JobRunnerOptions {
  generator: Generator;
  pusher: RelayPusher;
  logger: Logger;
  /** Attempts before a retryable failure is final (the queue's maxReceiveCount). */
  maxAttempts: number;
  now?: () => number;
}

/** Context of one delivery of a job. */
export interface RunContext {
  signal: AbortSignal;
  /** 1 on first delivery. */
  attempt: number;
}

/** Build the job handler. */
export function createJobRunner(
  opts: JobRunnerOptions,
): (job: Job, ctx: RunContext) => Promise<void> {
  const now = opts.now ?? Date.now;
  const base = (job: Job) => ({
    jobId: job.jobId,
    prompt: job.prompt,
    createdAt: job.createdAt,
    seed: job.params.seed,
    width: job.params.width,
    height: job.params.height,
    generator: opts.generator.name,
    ...(job.replyTarget ? { replyTarget: job.replyTarget } : {}),
  });

  return async (job, { signal, attempt }) => {
    const log = opts.logger.child({ jobId: job.jobId, attempt });
    if (now() > job.expiresAt) {
      log.warn('job expired before it could start');
      await opts.pusher.push({
        ...base(job),
        status: 'expired',
        error: {
          code: 'JOB_EXPIRED',
          message: 'the job waited too long in the queue; please try again',
        },
      });
      return;
    }
    // Status is best effort: the image matters more than the word "generating".
    await opts.pusher.push({ ...base(job), status: 'generating' }).catch((err) => {
      log.warn({ err }, 'could not report generating');
    });
    const started = performance.now();
    let images: Awaited<ReturnType<Generator['generate']>>;
    try {
      if (job.task !== 'generate')
        throw new ImagineError('GENERATION_FAILED', `this worker cannot ${job.task} images yet`);
      images = await opts.generator.generate(
        {
          task: job.task,
          prompt: job.prompt,
          width: job.params.width,
          height: job.params.height,
          seeds: jobSeeds(job),
          steps: job.params.steps,
          ...(job.model ? { model: job.model } : {}),
        },
        { signal },
      );
    } catch (err) {
      if (signal.aborted) throw err;
      const e = asImagineError(err, 'GENERATION_FAILED');
      if (isRetryable(e) && attempt < opts.maxAttempts) {
        log.warn({ err: e }, 'generation failed; the queue will retry');
        throw e;
      }
      log.error({ err: e }, 'generation failed');
      await opts.pusher.push({
        ...base(job),
        status: 'failed',
        error: { code: e.code, message: e.message },
      });
      return;
    }
    const generationMs = performance.now() - started;
    // Until the relay takes N images per push, the first one is delivered.
    const image = images[0]!;
    await opts.pusher.push(
      {
        ...base(job),
        status: 'done',
        contentType: image.contentType,
        seed: image.seed,
        width: image.width,
        height: image.height,
        generationMs,
      },
      image.bytes,
    );
    log.info({ generationMs: Math.round(generationMs), bytes: image.bytes.length }, 'job done');
  };
}
