/**
 * Slack's Web API limits each method per app per workspace by tier (Tier 3: ~50 a minute,
 * Tier 4: ~100), and a 429 makes `@slack/web-api` pause its whole request queue, so one
 * method over its tier would hold every other call, a finished image's upload included.
 * This budget counts calls per method over a sliding minute: status edits that can be
 * dropped (queue positions, "Generating…") may use only part of a method's tier and are
 * dropped, never queued, when it is spent; calls a user must see (results, failures) wait
 * for their own method's window only, so the shared client never sees a 429 it could avoid.
 */

/**
 * Calls per minute of the methods the adapter uses, from Slack's method reference
 * (`chat.update`, `chat.delete`, `conversations.join`: Tier 3; `chat.postEphemeral`, the
 * `files.*` upload methods, `files.info`, `users.info`, `views.*`: Tier 4). `chat.postMessage`
 * is special (about one a second per channel with bursts) and is not budgeted here.
 */
export const SLACK_METHOD_TIERS: Readonly<Record<string, number>> = {
  'chat.update': 50,
  'chat.delete': 50,
  'conversations.join': 50,
  'chat.postEphemeral': 100,
  'files.getUploadURLExternal': 100,
  'files.completeUploadExternal': 100,
  'files.info': 100,
  'users.info': 100,
  'views.open': 100,
  'views.publish': 100,
};

/** How much of a method's tier a call may use: droppable edits leave the rest to results. */
export const PRIORITY_SHARE = {
  /** A new percentage while generating: the first to go (the next one says more anyway). */
  percent: 0.3,
  /** Queue positions. */
  position: 0.5,
  /** "Generating…": dropped only when the tier is nearly spent. */
  progress: 0.8,
  /** Results and failures: the whole tier, waiting for room if need be. */
  final: 1,
} as const;

/** A call's priority. */
export type SlackCallPriority = keyof typeof PRIORITY_SHARE;

/** Options of {@link SlackRateBudget}. */
export interface SlackRateBudgetOptions {
  now?: () => number;
  /** The window the tiers count over (Slack: a minute). */
  windowMs?: number;
  tiers?: Readonly<Record<string, number>>;
}

/** Counts Web API calls per method and decides which may go now. */
export class SlackRateBudget {
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly tiers: Readonly<Record<string, number>>;
  private readonly sent = new Map<string, number[]>();
  /** Methods Slack answered 429 for, until when (ms). */
  private readonly pausedUntil = new Map<string, number>();

  constructor(opts: SlackRateBudgetOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.windowMs = opts.windowMs ?? 60_000;
    this.tiers = opts.tiers ?? SLACK_METHOD_TIERS;
  }

  /** Calls of `method` counted in the current window. */
  used(method: string): number {
    return this.window(method).length;
  }

  /**
   * A droppable call: `true` (and counted) when `method` has room within `priority`'s share
   * of its tier and Slack has not asked us to wait; `false` means skip the call.
   */
  tryTake(method: string, priority: Exclude<SlackCallPriority, 'final'>): boolean {
    const limit = this.tiers[method];
    if (limit === undefined) return true;
    if ((this.pausedUntil.get(method) ?? 0) > this.now()) return false;
    if (this.window(method).length >= Math.floor(limit * PRIORITY_SHARE[priority])) return false;
    this.window(method).push(this.now());
    return true;
  }

  /** A call that must go: resolves (and counts it) once `method` has room in its tier. */
  async take(method: string): Promise<void> {
    const limit = this.tiers[method];
    if (limit === undefined) return;
    for (;;) {
      const now = this.now();
      const paused = this.pausedUntil.get(method) ?? 0;
      const times = this.window(method);
      if (paused <= now && times.length < limit) {
        times.push(now);
        return;
      }
      const until = Math.max(paused, (times[0] ?? now) + this.windowMs);
      // Re-checked at least every second: the clock is a parameter and may move on its own.
      const wait = Math.min(1000, Math.max(50, until - now));
      await new Promise<void>((resolve) => setTimeout(resolve, wait).unref());
    }
  }

  /** Slack answered 429 for `method`: hold its calls for `retryAfterSeconds`. */
  pause(method: string, retryAfterSeconds: number): void {
    const until = this.now() + Math.max(1, retryAfterSeconds) * 1000;
    if (until > (this.pausedUntil.get(method) ?? 0)) this.pausedUntil.set(method, until);
  }

  private window(method: string): number[] {
    let times = this.sent.get(method);
    if (!times) {
      times = [];
      this.sent.set(method, times);
    }
    const since = this.now() - this.windowMs;
    while (times.length > 0 && times[0]! <= since) times.shift();
    return times;
  }
}
