/**
 * The one path every front end (web page, Discord, Slack) takes to turn a request into a job:
 * validate, admit (moderation and limits), seal the reply target, enqueue, register.
 * Nothing is half-created: a refusal or a queue failure leaves no job and no spent quota.
 */
import type { Logger } from 'pino';
import type { AdmissionPolicy, RequestDefaults, SettingsChanged } from '../contracts/admission.ts';
import { type BackendCapability, demandRefusal } from '../contracts/backends.ts';
import { ImagineError, type Quota } from '../contracts/errors.ts';
import { checkInputUrl, type InputUrlPolicy } from '../contracts/input-url.ts';
import {
  describeIssues,
  IMAGE_COUNT_DEFAULT,
  type ImagineRequest,
  ImagineRequestSchema,
  type Job,
  newJobId,
  type Origin,
  resolveRequest,
} from '../contracts/job.ts';
import { UPSCALE_MAX_SIDE, upscaleRefusal } from '../contracts/limits.ts';
import { type ReplyTarget, sealReplyTarget } from '../contracts/seal.ts';

// The admission port lives in contracts/ (moderation/ implements it); re-exported for front ends.
export type {
  Admission,
  AdmissionContext,
  AdmissionPolicy,
  RequestDefaults,
  SettingsChanged,
} from '../contracts/admission.ts';

/** Resolve-and-admit rounds a submission gets when settings keep changing under it. */
const ADMIT_ATTEMPTS = 3;

/** Admits everything. */
export const openAdmission: AdmissionPolicy = {
  admit: async () => ({ confirm: () => {}, cancel: async () => {} }),
  finished: () => {},
};

/** Where submitted jobs are registered so status can be followed (the relay's job tracker). */
export interface JobRegistry {
  /** Record a queued job; returns how many queued jobs are ahead of it. */
  registerQueued(job: Job): { position: number };
  /** Jobs queued and not yet started. */
  readonly queuedCount: number;
  /** Drop a job that never made it onto the queue. */
  forget(jobId: string): void;
}

/**
 * Where an admitted job goes: the queue port's producer side (queue/'s `JobQueue` is one),
 * declared here so that submit/ needs nothing from the room beside it.
 */
export interface JobSender {
  /** Resolves once the queue has accepted the job. */
  send(job: Job): Promise<void>;
}

/** Options of {@link createSubmitter}. */
export interface SubmitterOptions {
  queue: JobSender;
  registry: JobRegistry;
  secret: string;
  defaultSteps: number;
  /**
   * Images a request makes when neither it nor its user names a count (default
   * {@link IMAGE_COUNT_DEFAULT}, 4); the policy caps it by the server/channel's `max_images`.
   */
  defaultCount?: number;
  jobTtlSeconds: number;
  /** Models users may choose (`MODELS`); a request naming another is refused. */
  models?: readonly string[];
  /**
   * Where input image URLs may point (checked here too, so a bad link is a 400 rather than a
   * failed job). Without it, URL inputs are refused.
   */
  inputPolicy?: InputUrlPolicy;
  /**
   * Largest side an upscale's output may have on this deployment's generators (`upscaleMaxSide`
   * in contracts/backends.ts); a bigger upscale is refused here, not failed by the generator
   * after queueing. Default {@link UPSCALE_MAX_SIDE}.
   */
  upscaleMaxSide?: number;
  /**
   * What each of the deployment's `GENERATORS` backends can do (`backendCapability` in
   * contracts/backends.ts): a job none of them would take is refused here, not failed by the
   * worker's router after queueing. Unset with one `GENERATOR` (the request contract's own
   * limits are its).
   */
  backends?: readonly BackendCapability[];
  admission?: AdmissionPolicy;
  logger: Logger;
  now?: () => number;
}

/** The result of a successful submission. */
export interface Submitted {
  job: Job;
  position: number;
  /** What is left of the nearest images-per-window limit after this job (when one counts). */
  quota?: Quota;
}

/** What a front end submits. `request` is unvalidated input (parsed JSON, command options). */
export interface Submission {
  request: unknown;
  origin: Origin;
  replyTarget?: ReplyTarget;
}

/** Parse a raw request into an {@link ImagineRequest} or throw a coded 400. */
export function parseImagineRequest(raw: unknown): ImagineRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ImagineError(
      'BAD_REQUEST',
      'body must be a JSON object like {"prompt": "a fox in space"}',
    );
  const result = ImagineRequestSchema.safeParse(raw);
  if (result.success) return result.data;
  const promptIssue = result.error.issues.some((i) => i.path[0] === 'prompt');
  throw new ImagineError(
    promptIssue ? 'INVALID_PROMPT' : 'INVALID_PARAMETERS',
    describeIssues(result.error),
  );
}

/** A submit function bound to its queue, registry and policy. */
export type Submitter = (submission: Submission) => Promise<Submitted>;

/** Build the submit path shared by every front end. */
export function createSubmitter(opts: SubmitterOptions): Submitter {
  const admission = opts.admission ?? openAdmission;
  const now = opts.now ?? Date.now;
  const upscaleLimit = opts.upscaleMaxSide ?? UPSCALE_MAX_SIDE;
  return async ({ request, origin, replyTarget }) => {
    const parsed = parseImagineRequest(request);
    const offered = opts.models ?? [];
    if (parsed.model !== undefined && !offered.includes(parsed.model))
      throw new ImagineError(
        'INVALID_PARAMETERS',
        offered.length
          ? `model ${parsed.model} is not offered here; choose one of ${offered.join(', ')}`
          : 'this server offers no choice of model; leave model out',
      );
    // A bad input link is a 400 here rather than a failed job.
    if (parsed.input?.image.kind === 'url') {
      if (!opts.inputPolicy)
        throw new ImagineError('INPUT_NOT_ALLOWED', 'this relay takes no input image URLs');
      checkInputUrl(parsed.input.image.url, opts.inputPolicy, now());
    }
    const { width: inputWidth, height: inputHeight } = parsed.input ?? {};
    if (parsed.task === 'upscale' && inputWidth && inputHeight) {
      const refusal = upscaleRefusal(inputWidth, inputHeight, upscaleLimit);
      if (refusal) throw new ImagineError('INVALID_PARAMETERS', refusal);
    }
    const fallback = { steps: opts.defaultSteps, count: opts.defaultCount ?? IMAGE_COUNT_DEFAULT };
    const { registry } = opts;
    const jobId = newJobId();
    const resolveAndAdmit = async () => {
      const defaults: RequestDefaults = admission.requestDefaults
        ? await admission.requestDefaults(origin, fallback)
        : fallback;
      const model = chooseModel(parsed.model, offered, defaults.models);
      const req = withDefaults(model === undefined ? parsed : { ...parsed, model }, defaults);
      const resolved = resolveRequest(req, defaults);
      const refusal =
        opts.backends &&
        demandRefusal(opts.backends, {
          task: resolved.task,
          count: resolved.count,
          width: resolved.params.width,
          height: resolved.params.height,
          model: req.model,
        });
      if (refusal) throw new ImagineError('INVALID_PARAMETERS', refusal);
      const granted = await admission.admit({
        prompt: req.prompt,
        params: resolved.params,
        task: resolved.task,
        count: resolved.count,
        origin,
        jobId,
        defaults,
        // Read live: a policy checks it again after its own awaits, when parallel requests
        // may have queued jobs meanwhile.
        get queueLength() {
          return registry.queuedCount;
        },
      });
      return { req, ...resolved, granted };
    };
    let admitted: Awaited<ReturnType<typeof resolveAndAdmit>> | undefined;
    for (let attempt = 1; !admitted; attempt++) {
      try {
        admitted = await resolveAndAdmit();
      } catch (err) {
        if ((err as Partial<SettingsChanged> | null)?.settingsChanged !== true) throw err;
        if (attempt >= ADMIT_ATTEMPTS)
          throw new ImagineError(
            'QUEUE_UNAVAILABLE',
            'the settings here are being changed; try again shortly',
            { cause: err, retryAfterSeconds: 5 },
          );
      }
    }
    const { req, task, count, params, input, strength, granted } = admitted;
    const createdAt = now();
    const job: Job = {
      v: 1,
      jobId,
      task,
      count,
      prompt: req.prompt,
      params,
      ...(input ? { input } : {}),
      ...(strength !== undefined ? { strength } : {}),
      ...(req.model !== undefined ? { model: req.model } : {}),
      origin,
      createdAt,
      expiresAt: createdAt + opts.jobTtlSeconds * 1000,
      ...(replyTarget ? { replyTarget: sealReplyTarget(opts.secret, replyTarget) } : {}),
      ...(granted.safety ? { safety: granted.safety } : {}),
    };
    // Registered before sending: a fast worker may report on the job before send() returns.
    const { position } = opts.registry.registerQueued(job);
    try {
      await opts.queue.send(job);
    } catch (err) {
      opts.registry.forget(job.jobId);
      await granted.cancel();
      throw err;
    }
    granted.confirm(job.jobId);
    opts.logger.info({ jobId: job.jobId, platform: origin.platform, position }, 'job queued');
    return { job, position, ...(granted.quota ? { quota: granted.quota } : {}) };
  };
}

/**
 * Fill what a request leaves out from the defaults that apply to its user: the aspect of a new
 * image (a vary keeps its input's, an upscale doubles it) and a vary's strength.
 */
function withDefaults(
  req: ImagineRequest,
  defaults: Pick<RequestDefaults, 'aspect' | 'vary'>,
): ImagineRequest {
  const task = req.task ?? (req.input ? 'vary' : 'generate');
  const out: ImagineRequest = { ...req };
  if (defaults.aspect && task === 'generate' && !req.aspect && !req.width)
    out.aspect = defaults.aspect;
  if (defaults.vary && task === 'vary' && req.strength === undefined) out.strength = defaults.vary;
  return out;
}

/**
 * The model a job runs with where moderators restrict the choice: the one asked for if allowed
 * (a refusal listing the allowed ones if not), else the offered default (the first of MODELS)
 * when allowed, else the scope's first allowed one. Unrestricted, the request is left as it is.
 */
function chooseModel(
  asked: string | undefined,
  offered: readonly string[],
  restriction: readonly string[] | undefined,
): string | undefined {
  if (!restriction || restriction.length === 0) return asked;
  const allowed = restriction.filter((m) => offered.includes(m));
  if (allowed.length === 0)
    throw new ImagineError(
      'INVALID_PARAMETERS',
      `no model allowed here is offered any more (allowed: ${restriction.join(', ')}; offered: ${offered.join(', ') || 'none'}); ask a moderator to update the models setting`,
    );
  if (asked !== undefined) {
    if (allowed.includes(asked)) return asked;
    throw new ImagineError(
      'INVALID_PARAMETERS',
      `model ${asked} is not allowed here; choose one of ${allowed.join(', ')}`,
    );
  }
  const fallback = offered[0];
  return fallback !== undefined && allowed.includes(fallback) ? fallback : allowed[0];
}
