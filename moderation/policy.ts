/**
 * The admission policy every submission passes: allowed channel, image size, blocked words,
 * queue length, then per-user concurrency and the per-user and per-scope windows. A refusal
 * names the reason and when to come back; nothing is counted for it.
 */
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type {
  Admission,
  AdmissionContext,
  AdmissionPolicy,
  RequestDefaults,
  SettingsChanged,
} from '../contracts/admission.ts';
import { formatDuration, formatPer } from '../contracts/duration.ts';
import { type Quota as ErrorQuota, ImagineError } from '../contracts/errors.ts';
import type { Origin } from '../contracts/job.ts';
import { type Blocklist, BUILTIN_BLOCKED_WORDS, compileBlocklist } from './blocklist.ts';
import type { ConcurrencySlots, SlotLease, WindowCounters, WindowUsage } from './counters.ts';
import {
  type AuditEntry,
  channelAllowed,
  effectiveLimits,
  type Limits,
  type ScopeSettings,
  safetyPolicyOf,
  scopeKeyOf,
} from './settings.ts';
import type { SettingsChange, SettingsStore } from './store.ts';
import {
  applyUserChange,
  type UserDefaults,
  type UserDefaultsChange,
  userKeyOf,
} from './user-settings.ts';

/** A web user's own defaults: none (they are kept per chat user). */
const NO_USER_DEFAULTS: UserDefaults = Object.freeze({});

/** Seconds one job is assumed to take before any has been seen finishing. */
const DEFAULT_SECONDS_PER_JOB = 20;
/** How many recent finishes the throughput estimate looks at. */
const THROUGHPUT_SAMPLES = 20;

/** What {@link ModerationPolicy} is built from. */
export interface ModerationPolicyOptions {
  defaults: Limits;
  store: SettingsStore;
  counters: WindowCounters;
  slots: ConcurrencySlots;
  /** Blocked everywhere (configuration), besides built-ins and per-scope words. */
  extraBlockedWords?: string[];
  /** Slack user ids allowed to moderate besides workspace admins and owners. */
  slackAdminUsers?: string[];
  /** The models offered (`MODELS`): what moderators may restrict a scope's choice to. */
  models?: readonly string[];
  /** Defaults of the web page's scope that differ from every scope's (`SAFETY_WEB`). */
  webDefaults?: Partial<Limits>;
  /** How long a concurrency slot is held if its job's end is never seen (crash, lost push). */
  leaseMs: number;
  logger: Logger;
  now?: () => number;
  /** Closes connections the policy was built with. */
  onClose?: () => Promise<void>;
}

/** One counted window as a user sees it. */
export interface WindowQuota {
  limit: number;
  used: number;
  remaining: number;
  /** Seconds until the window resets (0 when nothing is counted yet). */
  resetsInSeconds: number;
}

/** What `/imagine-quota` reports. */
export interface Quota {
  scopeKey: string;
  limits: Limits;
  channelAllowed: boolean;
  user: WindowQuota;
  scope: WindowQuota;
  concurrent: { limit: number; inProgress: number };
}

function secondsFromMs(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

/** Moderation and rate limits for every front end; also the data behind the admin commands. */
export class ModerationPolicy implements AdmissionPolicy {
  readonly defaults: Limits;
  readonly webDefaults: Limits;
  readonly store: SettingsStore;
  readonly slackAdminUsers: readonly string[];
  readonly models: readonly string[];
  readonly #counters: WindowCounters;
  readonly #slots: ConcurrencySlots;
  readonly #extraWords: string[];
  readonly #leaseMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #onClose: (() => Promise<void>) | undefined;
  readonly #blocklists = new Map<string, Blocklist>();
  /** The settings each request's defaults were worked out from, for its admission. */
  readonly #readFor = new WeakMap<
    RequestDefaults,
    { scopeKey: string; settings: ScopeSettings; version?: string }
  >();
  /**
   * The blocklist of a settings read kept in memory by its store (the same word list object
   * while the scope is unchanged), without the entries being joined into a key on every request;
   * index 1 with the built-in words, 0 without.
   */
  readonly #blocklistOf = new WeakMap<readonly string[], [Blocklist?, Blocklist?]>();
  /** Admissions granted and not yet confirmed or cancelled (on their way onto the queue). */
  #admitting = 0;
  readonly #finishTimes: number[] = [];
  /** Retries of slot bindings and releases the store refused (an outage). */
  readonly #retries = new Set<NodeJS.Timeout>();
  /**
   * What each job admitted here took from the windows, oldest first, so a cancel before it
   * starts gives it back (kept as long as a lease could live).
   */
  readonly #refunds = new Map<string, { at: number; giveBack: () => Promise<void> }>();
  #closed = false;
  /** Whether the slot and the windows are taken in one atomic step (Redis). */
  readonly #countsAtOnce: boolean;

  constructor(opts: ModerationPolicyOptions) {
    this.defaults = Object.freeze({ ...opts.defaults });
    this.webDefaults = Object.freeze({ ...opts.defaults, ...(opts.webDefaults ?? {}) });
    this.store = opts.store;
    this.slackAdminUsers = Object.freeze([...(opts.slackAdminUsers ?? [])]);
    this.models = Object.freeze([...(opts.models ?? [])]);
    this.#counters = opts.counters;
    this.#slots = opts.slots;
    this.#countsAtOnce = opts.slots.acquireCounted !== undefined && opts.counters.inRedis;
    this.#extraWords = opts.extraBlockedWords ?? [];
    this.#leaseMs = opts.leaseMs;
    this.#logger = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#onClose = opts.onClose;
  }

  /** The defaults a scope starts from (the web page has its own). */
  defaultsFor(scopeKey: string): Limits {
    return scopeKey.startsWith('web:') ? this.webDefaults : this.defaults;
  }

  /**
   * Write an output-safety decision or a moderator's review action to the scope's audit log
   * (who, which job; never the image). Best effort: a store failure is logged, not thrown.
   */
  async note(scopeKey: string, audit: AuditEntry): Promise<void> {
    try {
      await this.store.apply(scopeKey, { kind: 'note' }, audit);
    } catch (err) {
      this.#logger.warn(
        { err, scope: scopeKey, action: audit.action },
        'could not write audit line',
      );
    }
  }

  /** The stored overrides of a scope, wrapping store failures into a coded 503. */
  async settingsOf(scopeKey: string): Promise<ScopeSettings> {
    try {
      return await this.store.get(scopeKey);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /** Apply a moderator's change (the caller has checked permission). */
  async change(scopeKey: string, change: SettingsChange, audit: AuditEntry): Promise<void> {
    try {
      await this.store.apply(scopeKey, change, audit);
    } catch (err) {
      throw storeUnavailable(err);
    }
    this.#logger.info(
      { scope: scopeKey, actor: audit.actorId, action: audit.action },
      'moderation settings changed',
    );
  }

  /** A user's own defaults (`{}` for the web page and for users who set none). */
  async userDefaults(origin: Pick<Origin, 'platform' | 'userId'>): Promise<UserDefaults> {
    const key = userKeyOf(origin);
    if (key === undefined) return {};
    try {
      return await this.store.getUser(key);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /** Change a user's own defaults; `null` as the change resets them all. Returns the result. */
  async changeUserDefaults(
    origin: Pick<Origin, 'platform' | 'userId'>,
    change: UserDefaultsChange | null,
  ): Promise<UserDefaults> {
    const key = userKeyOf(origin);
    if (key === undefined)
      throw new ImagineError(
        'BAD_REQUEST',
        'settings are kept per chat user; the web page keeps its own',
      );
    try {
      const next = change === null ? {} : applyUserChange(await this.store.getUser(key), change);
      await this.store.setUser(key, next);
      return next;
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /** The limits that apply to an origin (defaults, scope, channel). */
  async limitsFor(origin: Origin): Promise<Limits> {
    const settings = await this.settingsOf(scopeKeyOf(origin));
    return effectiveLimits(this.defaults, settings, origin.channelId);
  }

  /**
   * What a request that says nothing more gets: the user's own defaults, else the server's,
   * capped by the limits where it is made (a user's 4 images are 2 where moderators allow 2).
   */
  async requestDefaults(
    origin: Origin,
    fallback: { count: number; steps: number },
  ): Promise<RequestDefaults> {
    const scopeKey = scopeKeyOf(origin);
    // The web page's users keep no defaults of their own: only the scope's settings to read.
    const [mine, read] =
      userKeyOf(origin) === undefined
        ? [NO_USER_DEFAULTS, await this.#recent(scopeKey)]
        : await Promise.all([this.userDefaults(origin), this.#recent(scopeKey)]);
    const { settings } = read;
    const limits = effectiveLimits(this.defaults, settings, origin.channelId);
    const defaults: RequestDefaults = {
      count: Math.min(mine.count ?? fallback.count, limits.maxImagesPerJob),
      steps: Math.min(mine.steps ?? fallback.steps, limits.maxSteps),
      ...(mine.aspect ? { aspect: mine.aspect } : {}),
      ...(mine.vary ? { vary: mine.vary } : {}),
      ...(limits.models.length > 0 ? { models: limits.models } : {}),
    };
    // The admission of this request reads the same settings: kept for it, not read again.
    this.#readFor.set(defaults, {
      scopeKey,
      settings,
      ...(read.checked ? {} : { version: read.version }),
    });
    return defaults;
  }

  /**
   * The scope's settings as this relay last read them, when its store can check them later in
   * the admission's own atomic step (Redis): no round trip here. Otherwise a current read.
   */
  async #recent(
    scopeKey: string,
  ): Promise<{ settings: ScopeSettings; version: string; checked: boolean }> {
    if (!this.store.recent || !this.store.versionKey || !this.#countsAtOnce)
      return { settings: await this.settingsOf(scopeKey), version: '', checked: true };
    try {
      return await this.store.recent(scopeKey);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /** The blocklist that applies under these settings. */
  blocklistFor(settings: ScopeSettings, limits: Limits): Blocklist {
    const which = limits.builtinBlockedWords ? 1 : 0;
    const known = Object.isFrozen(settings.blockedWords)
      ? this.#blocklistOf.get(settings.blockedWords)
      : undefined;
    const hit = known?.[which];
    if (hit) return hit;
    const list = this.#compiledBlocklist(settings, limits);
    if (Object.isFrozen(settings.blockedWords)) {
      const pair = known ?? [];
      pair[which] = list;
      this.#blocklistOf.set(settings.blockedWords, pair);
    }
    return list;
  }

  #compiledBlocklist(settings: ScopeSettings, limits: Limits): Blocklist {
    const entries = [
      ...(limits.builtinBlockedWords ? BUILTIN_BLOCKED_WORDS : []),
      ...this.#extraWords,
      ...settings.blockedWords,
    ];
    const cacheKey = entries.join('\n');
    let list = this.#blocklists.get(cacheKey);
    if (!list) {
      list = compileBlocklist(entries);
      // A small cache: lists change only when moderators edit them.
      if (this.#blocklists.size >= 100) this.#blocklists.clear();
      this.#blocklists.set(cacheKey, list);
    }
    return list;
  }

  /** Seconds one queued job takes to clear, from recent finishes (a default before any). */
  secondsPerJob(): number {
    const times = this.#finishTimes;
    const first = times[0];
    const last = times[times.length - 1];
    if (times.length < 2 || first === undefined || last === undefined)
      return DEFAULT_SECONDS_PER_JOB;
    if (this.#now() - last > 10 * 60_000) return DEFAULT_SECONDS_PER_JOB;
    return Math.max(0.5, (last - first) / 1000 / (times.length - 1));
  }

  async admit(ctx: AdmissionContext): Promise<Admission> {
    const scopeKey = scopeKeyOf(ctx.origin);
    const read = ctx.defaults && this.#readFor.get(ctx.defaults);
    if (read?.scopeKey !== scopeKey)
      return this.#admitUnder(ctx, scopeKey, await this.settingsOf(scopeKey), undefined);
    if (read.version === undefined)
      return this.#admitUnder(ctx, scopeKey, read.settings, undefined);
    try {
      return await this.#admitUnder(ctx, scopeKey, read.settings, read.version);
    } catch (err) {
      // A refusal worked out from settings not checked on this read stands only if they are
      // still current; otherwise the request is resolved again under the new ones.
      if (!(err instanceof ImagineError) || err.code === 'QUEUE_UNAVAILABLE') throw err;
      if ((await this.settingsOf(scopeKey)) === read.settings) throw err;
      throw settingsChanged();
    }
  }

  async #admitUnder(
    ctx: AdmissionContext,
    scopeKey: string,
    settings: ScopeSettings,
    version: string | undefined,
  ): Promise<Admission> {
    const { origin, params } = ctx;
    if (!channelAllowed(settings, channelForRules(origin))) {
      const where = settings.allowedChannels.slice(0, 5).map((c) => `<#${c}>`);
      throw new ImagineError(
        'CHANNEL_NOT_ALLOWED',
        where.length > 0
          ? `/imagine is not enabled in this channel; try ${where.join(', ')}`
          : '/imagine is not enabled in this channel',
      );
    }
    const limits = effectiveLimits(this.defaultsFor(scopeKey), settings, origin.channelId);

    // An upscale doubles its input: the side limit applies to what it starts from (the image
    // it was offered under), or the Upscale button on a 2048-pixel image would be refused.
    const upscale = ctx.task === 'upscale';
    const side = Math.max(params.width, params.height) / (upscale ? 2 : 1);
    if (side > limits.maxImageSide)
      throw new ImagineError(
        'INVALID_PARAMETERS',
        upscale
          ? `images here are upscaled from at most ${limits.maxImageSide} pixels on a side (this one is ${params.width / 2}×${params.height / 2})`
          : `images here are at most ${limits.maxImageSide} pixels on a side (asked for ${params.width}×${params.height})`,
      );

    if (ctx.count > limits.maxImagesPerJob)
      throw new ImagineError(
        'INVALID_PARAMETERS',
        `at most ${limits.maxImagesPerJob} image${limits.maxImagesPerJob === 1 ? '' : 's'} per request here (asked for ${ctx.count})`,
      );
    if (params.steps > limits.maxSteps)
      throw new ImagineError(
        'INVALID_PARAMETERS',
        `at most ${limits.maxSteps} steps per request here (asked for ${params.steps})`,
      );

    const hit = this.blocklistFor(settings, limits).match(ctx.prompt);
    if (hit !== undefined)
      throw new ImagineError(
        'BLOCKED_CONTENT',
        `the prompt contains a blocked word or phrase ("${hit}"); rephrase it and try again`,
      );

    this.#checkQueue(ctx, limits);
    const admission = await this.#count(
      scopeKey,
      origin,
      limits,
      ctx.count,
      () => this.#checkQueue(ctx, limits),
      ctx.jobId,
      version === undefined || !this.store.versionKey
        ? undefined
        : { versionKey: this.store.versionKey(scopeKey), version },
    );
    return { ...admission, safety: safetyPolicyOf(limits, origin.ageRestricted) };
  }

  /**
   * Refuse when the queue is full. Jobs admitted here but not yet on the queue count as queued:
   * parallel requests all see the same queue length before any of them is enqueued.
   */
  #checkQueue(ctx: AdmissionContext, limits: Limits): void {
    const waiting = ctx.queueLength + this.#admitting;
    if (waiting < limits.maxQueueLength) return;
    const ahead = waiting - limits.maxQueueLength + 1;
    const seconds = Math.min(3600, Math.max(5, Math.ceil(ahead * this.secondsPerJob())));
    throw new ImagineError(
      'QUEUE_FULL',
      `imagine is busy (${waiting} job${waiting === 1 ? '' : 's'} waiting); try again in about ${formatDuration(Math.max(60, seconds))}`,
      { retryAfterSeconds: seconds },
    );
  }

  /**
   * Take a concurrency slot, then the job's `images` from the user's and the scope's windows;
   * undo on any refusal. `lastCheck` runs after the last await, so nothing can slip in between
   * it and the grant. Where the slots' store can do it all in one atomic step (Redis: one
   * script, one round trip), it does, binding the slot to `jobId` in the same step.
   */
  async #count(
    scopeKey: string,
    origin: Origin,
    limits: Limits,
    images: number,
    lastCheck: () => void,
    jobId: string | undefined,
    read: { versionKey: string; version: string } | undefined,
  ): Promise<Admission> {
    const userKey = `u:${scopeKey}:${rateUserOf(origin)}`;
    const scopeCounter = `s:${scopeKey}`;
    const window = limits.windowSeconds;
    if (limits.imagesPerUser === 0 || limits.imagesPerScope === 0)
      throw new ImagineError('RATE_LIMITED', 'moderators have paused image requests here');

    const undo: Array<() => Promise<void>> = [];
    // The window counts alone (the slot goes back when the job is finished).
    const counted: Array<() => Promise<void>> = [];
    const rollback = async () => {
      for (const step of undo.reverse())
        await step().catch((err) => this.#logger.warn({ err }, 'could not give back a count'));
    };
    const windows = [
      { name: userKey, limit: limits.imagesPerUser },
      { name: scopeCounter, limit: limits.imagesPerScope },
    ];
    const storeKeys = windows.map((w) => this.#counters.redisKey(window, w.name));
    /** Each window's count with this job and ms until it resets, as the store answered. */
    let after: WindowUsage[] = [];
    try {
      let lease: SlotLease;
      let bound = false;
      if (this.#countsAtOnce && this.#slots.acquireCounted) {
        const got = await this.#slots.acquireCounted(
          userKey,
          limits.concurrentPerUser,
          this.#leaseMs,
          {
            windows: windows.map((w, i) => ({ key: storeKeys[i] as string, limit: w.limit })),
            windowSeconds: window,
            points: images,
            jobId,
            settings: read,
          },
        );
        if (!got.ok) {
          if (got.refused === 'stale') {
            this.store.forget?.(scopeKey);
            throw settingsChanged();
          }
          if (got.refused === 'slot') throw this.#busy(got.held, limits);
          throw got.window === 0
            ? this.#userWindowFull(limits, images, got.usage)
            : this.#scopeWindowFull(limits, images, got.usage, origin);
        }
        lease = got.lease;
        bound = got.bound;
        const slotLease = got.lease;
        undo.push(() =>
          bound && jobId !== undefined
            ? this.#slots.releaseJob(jobId)
            : this.#slots.release(slotLease),
        );
        after = windows.map((_, i) => ({
          used: got.used[i] ?? 0,
          resetsInMs: got.resetsInMs[i] ?? 0,
        }));
        windows.forEach((w, i) => {
          const endsAt = this.#counters.endsAt(got.resetsInMs[i] ?? 0);
          undo.push(() => this.#counters.giveBack(w.name, window, endsAt, images));
          counted.push(undo.at(-1)!);
        });
      } else {
        if (read) throw settingsChanged(); // Never: unchecked reads are only handed out with it.
        const slot = await this.#slots.acquire(userKey, limits.concurrentPerUser, this.#leaseMs);
        if (!slot.ok) throw this.#busy(slot.held, limits);
        lease = slot.lease;
        const slotLease = slot.lease;
        undo.push(() => this.#slots.release(slotLease));

        // Every image counts: a job of 4 takes 4, an upscale 1.
        const mine = await this.#counters.take(userKey, limits.imagesPerUser, window, images);
        if (!mine.ok) throw this.#userWindowFull(limits, images, mine.usage);
        undo.push(() => this.#counters.giveBack(userKey, window, mine.windowEndsAt, images));
        counted.push(undo.at(-1)!);

        const all = await this.#counters.take(scopeCounter, limits.imagesPerScope, window, images);
        if (!all.ok) throw this.#scopeWindowFull(limits, images, all.usage, origin);
        undo.push(() => this.#counters.giveBack(scopeCounter, window, all.windowEndsAt, images));
        counted.push(undo.at(-1)!);
        after = [mine.usage, all.usage];
      }

      lastCheck();
      this.#admitting++;
      let settled = false;
      const quota = quotaLeft(windows, after, window);
      return {
        ...(quota ? { quota } : {}),
        confirm: (confirmedId) => {
          if (settled) return;
          settled = true;
          this.#admitting--;
          // Bound already when the job's id was known at admission (and it is this job).
          if (!bound || confirmedId !== jobId) this.#hold(confirmedId, lease);
          this.#keepRefund(confirmedId, async () => {
            for (const step of counted) await step();
          });
        },
        cancel: async () => {
          if (settled) return;
          settled = true;
          this.#admitting--;
          await rollback();
        },
      };
    } catch (err) {
      await rollback();
      if (err instanceof ImagineError || isSettingsChanged(err)) throw err;
      throw storeUnavailable(err);
    }
  }

  #busy(held: number, limits: Limits): ImagineError {
    return new ImagineError(
      'RATE_LIMITED',
      `you already have ${held} job${held === 1 ? '' : 's'} in progress (the limit here is ${limits.concurrentPerUser}); try again when one finishes`,
      { retryAfterSeconds: Math.max(5, Math.ceil(this.secondsPerJob())) },
    );
  }

  #userWindowFull(limits: Limits, images: number, usage: WindowUsage): ImagineError {
    const window = limits.windowSeconds;
    const quota = quotaOf('user', limits.imagesPerUser, usage, window);
    const { remaining: left, resetSeconds: wait } = quota;
    return new ImagineError(
      'RATE_LIMITED',
      left > 0
        ? `this asks for ${images} images and you have ${left} of your ${imageCount(limits.imagesPerUser)} ${formatPer(window)} left here; ask for ${left} or fewer, or try again in ${formatDuration(wait)}`
        : `you have used your ${imageCount(limits.imagesPerUser)} ${formatPer(window)} here; try again in ${formatDuration(wait)}`,
      { retryAfterSeconds: wait, quota },
    );
  }

  #scopeWindowFull(
    limits: Limits,
    images: number,
    usage: WindowUsage,
    origin: Origin,
  ): ImagineError {
    const window = limits.windowSeconds;
    const quota = quotaOf('scope', limits.imagesPerScope, usage, window);
    const { remaining: left, resetSeconds: wait } = quota;
    const noun = scopeNoun(origin.platform);
    return new ImagineError(
      'RATE_LIMITED',
      left > 0
        ? `this asks for ${images} images and this ${noun} has ${left} of its ${imageCount(limits.imagesPerScope)} ${formatPer(window)} left; ask for ${left} or fewer, or try again in ${formatDuration(wait)}`
        : `this ${noun} has used its ${imageCount(limits.imagesPerScope)} ${formatPer(window)}; try again in ${formatDuration(wait)}`,
      { retryAfterSeconds: wait, quota },
    );
  }

  #hold(jobId: string, lease: SlotLease): void {
    // Bound in the store, not in this process: the job's end may be seen by another relay
    // instance, or by this one after a restart.
    this.#persist('bind a concurrency slot to its job', () =>
      this.#slots.bind(jobId, lease, this.#leaseMs),
    );
  }

  #keepRefund(jobId: string, giveBack: () => Promise<void>): void {
    const now = this.#now();
    for (const [id, { at }] of this.#refunds) {
      if (now - at <= this.#leaseMs) break;
      this.#refunds.delete(id);
    }
    this.#refunds.set(jobId, { at: now, giveBack });
  }

  /** A job admitted here was cancelled before it started: its images go back to the windows. */
  cancelledBeforeStart(jobId: string): void {
    const refund = this.#refunds.get(jobId);
    if (!refund) return;
    this.#refunds.delete(jobId);
    refund
      .giveBack()
      .catch((err) => this.#logger.warn({ err, jobId }, 'could not give back a cancelled job'));
  }

  finished(jobId: string): void {
    // Finished (or cancelled, after its refund): nothing left to give back.
    this.#refunds.delete(jobId);
    this.#finishTimes.push(this.#now());
    if (this.#finishTimes.length > THROUGHPUT_SAMPLES) this.#finishTimes.shift();
    this.#persist('release a concurrency slot', () => this.#slots.releaseJob(jobId));
  }

  /**
   * Run a store write until it succeeds: a release lost to a Redis outage would hold the user's
   * slot until its lease expires (the job TTL, ~19 minutes). Retried with backoff (capped at
   * 30 s) for as long as the lease could live; order does not matter (a release seen before its
   * bind is remembered by the store).
   */
  #persist(what: string, write: () => Promise<void>, attempt = 0, since = this.#now()): void {
    write().then(
      () => {
        if (attempt > 0)
          this.#logger.info({ attempts: attempt + 1 }, `could ${what} after retrying`);
      },
      (err) => {
        if (this.#closed) return;
        if (this.#now() - since > this.#leaseMs) {
          this.#logger.warn({ err }, `gave up trying to ${what}; its lease expires on its own`);
          return;
        }
        if (attempt === 0) this.#logger.warn({ err }, `could not ${what}; retrying`);
        const timer = setTimeout(
          () => {
            this.#retries.delete(timer);
            this.#persist(what, write, attempt + 1, since);
          },
          Math.min(30_000, 200 * 2 ** attempt),
        );
        timer.unref();
        this.#retries.add(timer);
      },
    );
  }

  /** What a user has left in a scope (and channel), and when it resets. */
  async quota(origin: Origin): Promise<Quota> {
    const scopeKey = scopeKeyOf(origin);
    const settings = await this.settingsOf(scopeKey);
    const limits = effectiveLimits(this.defaultsFor(scopeKey), settings, origin.channelId);
    const userKey = `u:${scopeKey}:${rateUserOf(origin)}`;
    try {
      const [mine, all, inProgress] = await Promise.all([
        this.#counters.peek(userKey, limits.windowSeconds),
        this.#counters.peek(`s:${scopeKey}`, limits.windowSeconds),
        this.#slots.held(userKey),
      ]);
      const windowQuota = (limit: number, used: number, resetsInMs: number): WindowQuota => ({
        limit,
        used,
        remaining: Math.max(0, limit - used),
        resetsInSeconds: secondsFromMs(resetsInMs),
      });
      return {
        scopeKey,
        limits,
        channelAllowed: channelAllowed(settings, channelForRules(origin)),
        user: windowQuota(limits.imagesPerUser, mine.used, mine.resetsInMs),
        scope: windowQuota(limits.imagesPerScope, all.used, all.resetsInMs),
        concurrent: { limit: limits.concurrentPerUser, inProgress },
      };
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /** Close the store and the connections the policy was built with. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#retries) clearTimeout(timer);
    this.#retries.clear();
    await this.store.close();
    await this.#onClose?.();
  }
}

/**
 * The channel the allow/deny lists judge. A Slack DM (`D…`) is not a workspace channel: the
 * lists say where in the workspace /imagine may post, and a DM posts nowhere else.
 */
function channelForRules(origin: Origin): string | undefined {
  if (origin.platform === 'slack' && origin.channelId?.startsWith('D')) return undefined;
  return origin.channelId;
}

/**
 * Who a request counts against. On the web that is the client address; an IPv6 client counts by
 * its /64 network, since one host is usually handed a whole /64 and could step through it.
 */
export function rateUserOf(origin: Pick<Origin, 'platform' | 'userId'>): string {
  const user = origin.userId ?? 'anonymous';
  // Every IPv6 address has a colon; an IPv4 one (most web clients) is taken as it is.
  if (origin.platform !== 'web' || !user.includes(':')) return user;
  if (!isIPv6(user.split('%')[0] ?? '')) return user;
  return ipv6Network64(user.split('%')[0] ?? '');
}

/** `2001:db8:1:2:3:4:5:6` → `2001:db8:1:2::/64`; an IPv4-mapped address → the IPv4 address. */
function ipv6Network64(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped?.[1]) return mapped[1];
  const [head = '', tail] = ip.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const missing = 8 - left.length - right.length;
  const all = [...left, ...Array<string>(Math.max(0, missing)).fill('0'), ...right];
  const prefix = all.slice(0, 4).map((g) => (Number.parseInt(g, 16) || 0).toString(16));
  return `${prefix.join(':')}::/64`;
}

/** What users call a scope on each platform. */
export function scopeNoun(platform: string | undefined): string {
  if (platform === 'slack') return 'workspace';
  if (platform === 'web') return 'site';
  return 'server';
}

/** The settings a request's defaults came from changed before its admission: resolve it again. */
function settingsChanged(): SettingsChanged {
  return Object.assign(new Error('the settings changed while the request was admitted'), {
    settingsChanged: true as const,
  });
}

function isSettingsChanged(err: unknown): boolean {
  return (err as Partial<SettingsChanged> | null)?.settingsChanged === true;
}

/**
 * What is left after an admission of the nearest window (the user's, or the scope's when fewer
 * are left there), as a 429's `error.quota` says it; undefined when the store did not say.
 */
function quotaLeft(
  windows: ReadonlyArray<{ limit: number }>,
  after: readonly WindowUsage[],
  windowSeconds: number,
): ErrorQuota | undefined {
  let best: ErrorQuota | undefined;
  for (const [i, w] of windows.entries()) {
    const usage = after[i];
    if (!usage) continue;
    const quota = quotaOf(i === 0 ? 'user' : 'scope', w.limit, usage, windowSeconds);
    if (!best || quota.remaining < best.remaining) best = quota;
  }
  return best;
}

/** One window's quota as a 429's `error.quota` and a 202's `quota` say it. */
function quotaOf(
  of: ErrorQuota['of'],
  limit: number,
  usage: WindowUsage,
  windowSeconds: number,
): ErrorQuota {
  return {
    of,
    limit,
    remaining: Math.max(0, limit - usage.used),
    windowSeconds,
    resetSeconds: Math.max(1, secondsFromMs(usage.resetsInMs)),
  };
}

/** "1 image", "20 images". */
const imageCount = (n: number) => `${n} image${n === 1 ? '' : 's'}`;

function storeUnavailable(err: unknown): ImagineError {
  if (err instanceof ImagineError) return err;
  return new ImagineError(
    'QUEUE_UNAVAILABLE',
    'moderation settings are unavailable right now; try again shortly',
    { cause: err, retryAfterSeconds: 30 },
  );
}

/** `/imagine-quota`'s answer, for people. */
export function formatQuota(q: Quota): string {
  const per = formatPer(q.limits.windowSeconds);
  const lines = [
    q.user.remaining > 0
      ? `You have ${q.user.remaining} of your ${imageCount(q.user.limit)} ${per} left.`
      : `You have used your ${imageCount(q.user.limit)} ${per}.`,
    q.user.used > 0
      ? `Your window resets in ${formatDuration(q.user.resetsInSeconds)}.`
      : 'Your window starts with your next image.',
    `This ${scopeNoun(q.scopeKey.split(':')[0])} has ${q.scope.remaining} of its ${imageCount(q.scope.limit)} ${per} left${q.scope.used > 0 ? ` (resets in ${formatDuration(q.scope.resetsInSeconds)})` : ''}.`,
    `In progress: ${q.concurrent.inProgress} of ${q.concurrent.limit} at once.`,
  ];
  if (!q.channelAllowed) lines.push('/imagine is not enabled in this channel.');
  return lines.join('\n');
}
