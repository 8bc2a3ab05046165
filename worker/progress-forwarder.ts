/**
 * Forwards one running job's progress to the relay as signed `generating` pushes, coalesced: the
 * latest report wins, at most one push is in flight, and pushes start at least `intervalMs`
 * apart. A failed progress push is dropped (the next one replaces it); `stop()` aborts one in
 * flight, so the final push never waits behind it. While nothing else is pushed for `pollMs`,
 * a `generating` push without progress asks the relay whether the job was cancelled: the
 * relay's `409 JOB_CANCELLED`, to either, calls `onCancelled`.
 */
import type { Logger } from 'pino';
import { ImagineError } from '../contracts/errors.ts';
import { PREVIEW_MAX_BYTES } from '../contracts/ws-frames.ts';
import type { GenerateProgress } from './generator.ts';

/** Options of {@link ProgressForwarder}. */
export interface ProgressForwarderOptions {
  /** Send one `generating` push (with the progress, or none: a cancel poll). */
  push(progress: GenerateProgress | undefined, signal: AbortSignal): Promise<unknown>;
  /** Least time between the starts of two progress pushes (PROGRESS_PUSH_MS). */
  intervalMs: number;
  /** Ask after the job when nothing was pushed for this long (CANCEL_POLL_MS); 0: never. */
  pollMs: number;
  onCancelled(): void;
  logger: Logger;
  now?: () => number;
}

/** Whether a push failed because the relay says the job was cancelled. */
export function isCancelledRefusal(err: unknown): boolean {
  return err instanceof ImagineError && err.code === 'JOB_CANCELLED';
}

/** Coalesces one job's progress reports into pushes. */
export class ProgressForwarder {
  readonly #opts: ProgressForwarderOptions;
  readonly #now: () => number;
  #latest: GenerateProgress | undefined;
  #inFlight: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  /** When the last push of any kind started (cancel polls count from it). */
  #lastSentAt: number;
  /**
   * When the last progress push started; the "generating" push counts as the first, so a job
   * done within the interval pushes no progress at all.
   */
  #lastProgressAt: number;
  #stopped = false;

  constructor(opts: ProgressForwarderOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    // The "generating" push the runner just sent counts as the first word.
    this.#lastSentAt = this.#now();
    this.#lastProgressAt = this.#lastSentAt;
    if (opts.pollMs > 0) {
      this.#poll = setInterval(() => {
        if (!this.#inFlight && !this.#timer && this.#now() - this.#lastSentAt >= opts.pollMs)
          this.#send(undefined);
      }, opts.pollMs);
      this.#poll.unref();
    }
  }

  /** A report from the generator: it replaces any not yet sent. */
  report(progress: GenerateProgress): void {
    if (this.#stopped) return;
    // Too big a preview is left out; the step still goes.
    this.#latest =
      progress.preview && progress.preview.bytes.length > PREVIEW_MAX_BYTES
        ? { step: progress.step, steps: progress.steps }
        : progress;
    this.#schedule();
  }

  /** No more pushes; one in flight is aborted (the final push goes now). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#poll) clearInterval(this.#poll);
    this.#timer = undefined;
    this.#poll = undefined;
    this.#latest = undefined;
    this.#inFlight?.abort();
  }

  #schedule(): void {
    if (this.#stopped || this.#inFlight || this.#timer || !this.#latest) return;
    const wait = Math.max(0, this.#lastProgressAt + this.#opts.intervalMs - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const progress = this.#latest;
      this.#latest = undefined;
      if (progress && !this.#stopped) this.#send(progress);
    }, wait);
    this.#timer.unref();
  }

  #send(progress: GenerateProgress | undefined): void {
    const controller = new AbortController();
    this.#inFlight = controller;
    this.#lastSentAt = this.#now();
    if (progress) this.#lastProgressAt = this.#lastSentAt;
    this.#opts
      .push(progress, controller.signal)
      .catch((err: unknown) => {
        if (isCancelledRefusal(err)) {
          // After stop() the final push is on its way; the relay answers it as a duplicate.
          if (!this.#stopped) this.#opts.onCancelled();
          return;
        }
        // Progress is a courtesy: the next report replaces this one.
        if (!controller.signal.aborted)
          this.#opts.logger.debug({ err, step: progress?.step }, 'progress push dropped');
      })
      .finally(() => {
        if (this.#inFlight === controller) this.#inFlight = undefined;
        this.#schedule();
      });
  }
}
