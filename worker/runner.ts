/**
 * Runs one job: report "generating", call the generator (forwarding its progress), push the image
 * or the failure. Retryable failures are thrown so the queue redelivers, except on the last
 * attempt, when the user is told instead: no job dies without a word. A job the relay says was
 * cancelled (409 `JOB_CANCELLED` to the "generating" push) is skipped and acknowledged; one
 * cancelled while it runs (the answer to a progress push or a cancel poll) has its generator
 * call aborted. The relay has already told the user, so nothing more is pushed.
 */
import type { Logger } from 'pino';
import sharp from 'sharp';
import { asImagineError, ImagineError, isRetryable } from '../contracts/errors.ts';
import { type Job, type JobInput, jobSeeds } from '../contracts/job.ts';
import type { PushSource } from '../contracts/push.ts';
import {
  isPushed,
  type PushSafety,
  type SafetyPolicy,
  type SafetyVerdict,
} from '../contracts/safety.ts';
import { fitImage } from './fit-image.ts';
import type { Generator, GeneratorInput } from './generator.ts';
import type { InputFetcher } from './input-fetcher.ts';
import { isCancelledRefusal, ProgressForwarder } from './progress-forwarder.ts';
import type { RelayPusher } from './push-client.ts';
import type { ImageClassifier } from './safety/classifier.ts';
import { judgeImages } from './safety/judge.ts';

/** Output safety in the worker: the classifier, and the policy of a job that carries none. */
export interface WorkerSafety {
  classifier: ImageClassifier;
  /** From configuration (`SAFETY`, `SAFETY_THRESHOLD`): for jobs queued without a policy. */
  defaultPolicy: SafetyPolicy;
}

function scopeNoun(platform: string): string {
  return platform === 'slack' ? 'workspace' : platform === 'web' ? 'site' : 'server';
}

/** What the user is told when no image of the job may be delivered. */
function withheldMessage(job: Job, verdicts: readonly SafetyVerdict[]): string {
  const noun = scopeNoun(job.origin.platform);
  const some = verdicts.length === 1 ? 'the image' : `all ${verdicts.length} images`;
  return `this ${noun}'s safety setting blocked ${some}; nothing was delivered`;
}

/** What a push says of a job's input: which image it was, never where it lives. */
function sourceOf(input: JobInput): PushSource {
  const { image: _image, ...source } = input;
  return source;
}

/**
 * The input as the generator gets it: decoded, turned upright and cover-fitted to the size the
 * task starts from (a vary: the output size; an upscale: half of it), as PNG.
 */
async function prepareInput(job: Job, fetched: { bytes: Buffer }): Promise<GeneratorInput> {
  const half = job.task === 'upscale';
  const width = half ? job.params.width / 2 : job.params.width;
  const height = half ? job.params.height / 2 : job.params.height;
  const bytes = await sharp(fetched.bytes, { limitInputPixels: 8192 * 8192 })
    .rotate()
    .resize(width, height, { fit: 'cover', kernel: 'lanczos3' })
    .png({ compressionLevel: 3 })
    .toBuffer();
  return { bytes, contentType: 'image/png', width, height };
}

/** Options of {@link createJobRunner}. */
export interface JobRunnerOptions {
  generator: Generator;
  pusher: RelayPusher;
  logger: Logger;
  /** Fetches the input image of a vary or upscale (refused without one). */
  fetchInput?: InputFetcher;
  /** Attempts before a retryable failure is final (the queue's maxReceiveCount). */
  maxAttempts: number;
  /** Output safety; absent: images are not judged (tests of other things, benchmarks). */
  safety?: WorkerSafety | undefined;
  /** Largest image the relay accepts (`PUSH_MAX_BYTES`); bigger ones are re-encoded to fit. */
  maxImageBytes?: number;
  /**
   * Progress forwarding and cancel polls: least ms between a job's progress pushes (0: progress
   * is not forwarded) and ms without a push after which the worker asks whether the job was
   * cancelled (0: never). Absent: 250 and 2000.
   */
  progress?: { intervalMs: number; pollMs: number };
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
    task: job.task,
    count: job.count,
    steps: job.params.steps,
    ...(job.strength !== undefined ? { strength: job.strength } : {}),
    ...(job.model !== undefined ? { model: job.model } : {}),
    ...(job.input ? { source: sourceOf(job.input) } : {}),
    generator: opts.generator.name,
    ...(job.replyTarget ? { replyTarget: job.replyTarget } : {}),
  });

  const progressOpts = opts.progress ?? { intervalMs: 250, pollMs: 2000 };

  return async (job, { signal: queueSignal, attempt }) => {
    const log = opts.logger.child({ jobId: job.jobId, attempt });
    // Aborted by the queue (shutdown, lost lease) or by a cancel from the relay.
    const cancel = new AbortController();
    const signal = AbortSignal.any([queueSignal, cancel.signal]);
    let cancelled = false;
    const onCancelled = () => {
      if (cancelled) return;
      cancelled = true;
      log.info('the job was cancelled while running; stopping the generator');
      cancel.abort(new ImagineError('JOB_CANCELLED', 'the job was cancelled'));
    };
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
    // Status is best effort: the image matters more than the word "generating". Its answer
    // says whether the job was cancelled while it waited in the queue, or has already ended.
    try {
      const answer = await opts.pusher.push({ ...base(job), status: 'generating' });
      // The job already ended (a redelivery after its message could not be deleted, or the
      // queue's at-least-once delivery): the user has their answer; running it again would only
      // cost the generator.
      if (answer?.duplicate) {
        log.info('the job had already ended; skipped');
        return;
      }
    } catch (err) {
      if (isCancelledRefusal(err)) {
        log.info('the job was cancelled before it started; skipped');
        return;
      }
      log.warn({ err }, 'could not report generating');
    }
    const forwarder = new ProgressForwarder({
      push: (progress, pushSignal) =>
        opts.pusher.push(
          {
            ...base(job),
            status: 'generating',
            ...(progress ? { progress: { step: progress.step, steps: progress.steps } } : {}),
            ...(progress?.preview
              ? { preview: { contentType: progress.preview.contentType } }
              : {}),
          },
          undefined,
          {
            signal: pushSignal,
            attempts: 1,
            ...(progress?.preview ? { preview: progress.preview.bytes } : {}),
          },
        ),
      intervalMs: progressOpts.intervalMs,
      pollMs: progressOpts.pollMs,
      onCancelled,
      logger: log,
    });
    // A preview is pixels nobody classified: with output safety on for this job it is not sent
    // (the step counts still are), so no one sees an image before it is judged.
    const previews = !opts.safety || (job.safety ?? opts.safety.defaultPolicy).mode === 'off';
    const onProgress =
      progressOpts.intervalMs > 0
        ? (progress: Parameters<ProgressForwarder['report']>[0]) =>
            forwarder.report(previews ? progress : { step: progress.step, steps: progress.steps })
        : undefined;
    const started = performance.now();
    let images: Awaited<ReturnType<Generator['generate']>>;
    try {
      let input: GeneratorInput | undefined;
      if (job.task !== 'generate') {
        if (!job.input || !opts.fetchInput)
          throw new ImagineError('GENERATION_FAILED', `this worker cannot ${job.task} images`);
        input = await prepareInput(job, await opts.fetchInput(job.input.image, { signal }));
      }
      images = await opts.generator.generate(
        {
          task: job.task,
          prompt: job.prompt,
          width: job.params.width,
          height: job.params.height,
          seeds: jobSeeds(job),
          steps: job.params.steps,
          ...(job.model ? { model: job.model } : {}),
          ...(input ? { input } : {}),
          ...(job.strength !== undefined ? { strength: job.strength } : {}),
        },
        {
          signal,
          ...(onProgress
            ? {
                onProgress,
                wantsPreview: (step: number, steps: number) => previews && step < steps,
              }
            : {}),
        },
      );
    } catch (err) {
      forwarder.stop();
      // The relay already said "cancelled" everywhere: acknowledged, nothing more to push.
      if (cancelled) return;
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
    // The final push goes now: a progress push still in flight is aborted, not waited for.
    forwarder.stop();
    if (cancelled) return;
    const generationMs = performance.now() - started;
    if (images.length !== job.count) {
      const e = new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `the generator made ${images.length} images; the job asked for ${job.count}`,
      );
      log.error({ err: e }, 'generation failed');
      await opts.pusher.push({
        ...base(job),
        status: 'failed',
        error: { code: e.code, message: e.message },
      });
      return;
    }
    // Every image is judged before anything leaves the worker.
    let safety: PushSafety | undefined;
    if (opts.safety) {
      const policy = job.safety ?? opts.safety.defaultPolicy;
      let verdicts: SafetyVerdict[];
      try {
        verdicts = await judgeImages(images, policy, opts.safety.classifier);
      } catch (err) {
        const e = asImagineError(err, 'SAFETY_CHECK_FAILED');
        log.error({ err: e }, 'safety check failed; nothing delivered');
        await opts.pusher.push({
          ...base(job),
          status: 'failed',
          error: {
            code: 'SAFETY_CHECK_FAILED',
            message: 'the image could not be checked for safety, so it was not delivered',
          },
        });
        return;
      }
      safety = {
        verdicts: verdicts.map((v, index) => ({ ...v, index })),
        platform: job.origin.platform,
        ...(job.origin.scopeId === undefined ? {} : { scopeId: job.origin.scopeId }),
        ...(job.origin.userId === undefined ? {} : { userId: job.origin.userId }),
      };
      log.info(
        { safety: verdicts.map((v) => ({ action: v.action, score: v.score })) },
        'safety verdicts',
      );
      // Blocked images never leave the worker; held ones go to the relay, which keeps them for
      // a moderator instead of delivering them.
      const kept = images.filter((_, i) => isPushed(verdicts[i]!.action));
      if (kept.length === 0) {
        await opts.pusher.push({
          ...base(job),
          status: 'failed',
          error: { code: 'SAFETY_BLOCKED', message: withheldMessage(job, verdicts) },
          safety,
          generationMs,
        });
        return;
      }
      images = kept;
      // The verdicts of the images pushed come first, in the order of their parts.
      safety = {
        ...safety,
        verdicts: [
          ...safety.verdicts.filter((v) => isPushed(v.action)),
          ...safety.verdicts.filter((v) => !isPushed(v.action)),
        ],
      };
    }
    try {
      // Every image is made to fit the relay's per-image limit, then all go in one push.
      const limit = opts.maxImageBytes;
      if (limit !== undefined)
        images = await Promise.all(images.map((image) => fitImage(image, limit)));
      await opts.pusher.push(
        {
          ...base(job),
          ...(safety ? { safety } : {}),
          status: 'done',
          // The single-image fields stay for relays that predate meta.images.
          contentType: images[0]!.contentType,
          images: images.map(({ contentType, seed, width, height }) => ({
            contentType,
            seed,
            width,
            height,
          })),
          generationMs,
        },
        images.map((image) => image.bytes),
      );
    } catch (err) {
      // Unreachable relay: the queue tries again. Refused (any 4xx) or unfittable: tell the user
      // with a small `failed` push instead of leaving the job on "Generating…" until it expires.
      if (isRetryable(err) || signal.aborted) throw err;
      const e = asImagineError(err, 'DELIVERY_FAILED');
      log.error({ err: e }, 'the result was refused; telling the user');
      const what = images.length > 1 ? 'the images' : 'the image';
      await opts.pusher.push({
        ...base(job),
        status: 'failed',
        error: { code: e.code, message: `${what} could not be delivered: ${e.message}` },
      });
      return;
    }
    log.info(
      {
        generationMs: Math.round(generationMs),
        images: images.length,
        bytes: images.reduce((n, image) => n + image.bytes.length, 0),
      },
      'job done',
    );
  };
}
