/**
 * The admission port: what the submit path asks of moderation and rate limits, and what they
 * answer. Here, below both, so that submit/ (which asks) and moderation/ (which answers) each
 * import it without importing the other.
 */
import type { Quota } from './errors.ts';
import type { AspectRatio, JobParams, JobTask, Origin, VaryPreset } from './job.ts';
import type { SafetyPolicy } from './safety.ts';

/** What an admission policy sees of a request. */
export interface AdmissionContext {
  prompt: string;
  params: JobParams;
  /** The job's task: an upscale's size limit applies to its input (half its output). */
  task?: JobTask;
  /** Images the job makes: every window limit counts each (an upscale is 1). */
  count: number;
  origin: Origin;
  /**
   * The id the job will have if admitted (a policy may bind what it takes to it at once), and
   * the defaults the request was resolved under (a policy may keep what it read for them).
   */
  jobId?: string;
  defaults?: RequestDefaults;
  /**
   * Jobs queued and not yet started, as this relay sees them (for the queue-length limit).
   * Read at the time it is read (a getter), not when the request arrived.
   */
  readonly queueLength: number;
}

/**
 * What a request gets for what it leaves out: the user's own defaults (or the server's), already
 * capped by the limits where it is made.
 */
export interface RequestDefaults {
  count: number;
  steps: number;
  aspect?: AspectRatio;
  vary?: VaryPreset;
  /**
   * The models moderators allow where the request is made (their first is the default there);
   * absent = every offered one.
   */
  models?: readonly string[];
}

/** A granted admission: confirm once enqueued, cancel to give back what was taken. */
export interface Admission {
  confirm(jobId: string): void;
  cancel(): Promise<void>;
  /** The output-safety policy the job's images are judged under (the worker's default if absent). */
  safety?: SafetyPolicy;
  /**
   * What is left after this job of the images-per-window limit that is nearest (the user's, or
   * the scope's when fewer are left there), as a 429's `error.quota` says it.
   */
  quota?: Quota;
}

/**
 * What `admit` rejects with when the settings the request's defaults were worked out from
 * ({@link AdmissionContext.defaults}) changed before it was admitted: nothing was taken, and the
 * submitter resolves the request again (new defaults) and asks again.
 */
export interface SettingsChanged extends Error {
  settingsChanged: true;
}

/**
 * Moderation and rate limits. `admit` throws an {@link ImagineError} (`BLOCKED_CONTENT`,
 * `RATE_LIMITED`, `QUEUE_FULL`, `CHANNEL_NOT_ALLOWED`) to refuse, with `retryAfterSeconds` when
 * there is a time to come back.
 */
export interface AdmissionPolicy {
  admit(ctx: AdmissionContext): Promise<Admission>;
  /** A job reached a final state (done, failed, expired, cancelled): release per-user concurrency. */
  finished(jobId: string): void;
  /**
   * A job was cancelled before it started: give back the counts its admission took. Called on
   * every relay that sees the cancel; only the one that admitted the job holds what to give back.
   */
  cancelledBeforeStart?(jobId: string): void;
  /** The defaults a request from this origin gets (per-user defaults, capped by the server's). */
  requestDefaults?(
    origin: Origin,
    fallback: { count: number; steps: number },
  ): Promise<RequestDefaults>;
}
