/**
 * Atomic counting for admission: fixed-window counters (rate-limiter-flexible, Redis-backed or in
 * memory) and per-user concurrency slots (a Redis sorted set of leases, or a map in memory).
 * A take either fits under the limit or is undone at once, so parallel requests never over-admit
 * and refusals never eat quota.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type * as Limiters from 'rate-limiter-flexible';

// The package's index loads every store it supports (MongoDB, MySQL, Postgres, Etcd, ...: ~1.3 MB
// of heap); only the limiter in use is loaded, the Redis one only when counts live in Redis.
const require = createRequire(import.meta.url);
const RateLimiterRes =
  require('rate-limiter-flexible/lib/RateLimiterRes.js') as typeof Limiters.RateLimiterRes;
const RateLimiterMemory =
  require('rate-limiter-flexible/lib/RateLimiterMemory.js') as typeof Limiters.RateLimiterMemory;
const loadRedisLimiter = () =>
  require('rate-limiter-flexible/lib/RateLimiterRedis.js') as typeof Limiters.RateLimiterRedis;

// The limiters only count; the limit is compared here, so one counter serves every limit value
// a moderator may set for the same window.
const UNBOUNDED_POINTS = 2 ** 30;

/** A window counter's state. */
export interface WindowUsage {
  used: number;
  /** Milliseconds until the window resets (0 when nothing is counted). */
  resetsInMs: number;
}

/** The outcome of {@link WindowCounters.take}. */
export type TakeResult =
  | {
      ok: true;
      usage: WindowUsage /** When the counted window ends (epoch ms). */;
      windowEndsAt: number;
    }
  | { ok: false; usage: WindowUsage };

/** Fixed-window counters keyed by name, one rate-limiter-flexible limiter per window length. */
export class WindowCounters {
  readonly #limiters = new Map<number, Limiters.RateLimiterAbstract>();
  readonly #redis: Redis | undefined;
  readonly #prefix: string;
  readonly #now: () => number;

  constructor(opts: { redis?: Redis; prefix: string; now?: () => number }) {
    this.#redis = opts.redis;
    this.#prefix = opts.prefix;
    this.#now = opts.now ?? Date.now;
  }

  /** Whether the counts live in Redis (shared by every relay), not in this process. */
  get inRedis(): boolean {
    return this.#redis !== undefined;
  }

  /**
   * The Redis key rate-limiter-flexible counts `key` under for this window length, so a script
   * can count in the same key ({@link RedisConcurrencySlots.acquireCounted}); undefined in memory.
   */
  redisKey(windowSeconds: number, key: string): string | undefined {
    return this.#redis ? this.#limiter(windowSeconds).getKey(key) : undefined;
  }

  /** The epoch ms a window that resets in `ms` ends at (this process's clock). */
  endsAt(ms: number): number {
    return this.#now() + ms;
  }

  #limiter(windowSeconds: number): Limiters.RateLimiterAbstract {
    let limiter = this.#limiters.get(windowSeconds);
    if (!limiter) {
      // The window length is part of the key: changing it starts fresh counts.
      const keyPrefix = `${this.#prefix}rl:${windowSeconds}`;
      limiter = this.#redis
        ? new (loadRedisLimiter())({
            storeClient: this.#redis,
            keyPrefix,
            points: UNBOUNDED_POINTS,
            duration: windowSeconds,
          })
        : new RateLimiterMemory({ keyPrefix, points: UNBOUNDED_POINTS, duration: windowSeconds });
      this.#limiters.set(windowSeconds, limiter);
    }
    return limiter;
  }

  /**
   * Count `points` (the images of a job) against `key` if that keeps it within `limit`;
   * otherwise count nothing. A refusal's `used` is what was counted before this take.
   */
  async take(key: string, limit: number, windowSeconds: number, points = 1): Promise<TakeResult> {
    const limiter = this.#limiter(windowSeconds);
    const res = await limiter.consume(key, points).catch(rethrowStoreError);
    const usage = { used: res.consumedPoints, resetsInMs: res.msBeforeNext };
    if (res.consumedPoints <= limit)
      return { ok: true, usage, windowEndsAt: this.#now() + res.msBeforeNext };
    await limiter.reward(key, points).catch(rethrowStoreError);
    return {
      ok: false,
      usage: { used: Math.max(0, res.consumedPoints - points), resetsInMs: res.msBeforeNext },
    };
  }

  /**
   * Give back `points` taken for a job that never made it onto the queue, if its window is
   * still running.
   */
  async giveBack(
    key: string,
    windowSeconds: number,
    windowEndsAt: number,
    points = 1,
  ): Promise<void> {
    if (this.#now() >= windowEndsAt) return;
    await this.#limiter(windowSeconds).reward(key, points).catch(rethrowStoreError);
  }

  /** How much of `key`'s window is used. */
  async peek(key: string, windowSeconds: number): Promise<WindowUsage> {
    const res = await this.#limiter(windowSeconds).get(key).catch(rethrowStoreError);
    if (!res || res.msBeforeNext <= 0) return { used: 0, resetsInMs: 0 };
    return { used: Math.max(0, res.consumedPoints), resetsInMs: res.msBeforeNext };
  }
}

/** rate-limiter-flexible rejects with a RateLimiterRes (points exceeded) or a store Error. */
function rethrowStoreError(err: unknown): never {
  if (err instanceof RateLimiterRes) throw new Error('rate limiter refused an unbounded counter');
  throw err;
}

// Lease ids: this process's random prefix and a counter. Unique among every relay sharing a
// store without asking the system for randomness on each admission.
const LEASE_PREFIX = randomBytes(9).toString('base64url');
let leaseCounter = 0;
function newLeaseId(): string {
  return `${LEASE_PREFIX}${(leaseCounter++).toString(36)}`;
}

/** A held concurrency slot. */
export interface SlotLease {
  key: string;
  id: string;
}

/** The outcome of {@link ConcurrencySlots.acquire}. */
export type AcquireResult =
  | { ok: true; lease: SlotLease; held: number }
  | { ok: false; held: number };

/** The windows {@link ConcurrencySlots.acquireCounted} counts in, with the slot. */
export interface CountedTake {
  /** Store keys of the windows ({@link WindowCounters.redisKey}), with their limits, in order. */
  windows: ReadonlyArray<{ key: string; limit: number }>;
  windowSeconds: number;
  /** What the job counts in each window (its images). */
  points: number;
  /** The job the slot is for, when known: bound to it in the same step. */
  jobId?: string | undefined;
  /**
   * The settings the limits were worked out from, by their version: if the store's version is
   * another, nothing is taken and the answer is `refused: 'stale'`.
   */
  settings?: { versionKey: string; version: string } | undefined;
}

/** The outcome of {@link ConcurrencySlots.acquireCounted}. */
export type CountedResult =
  | {
      ok: true;
      lease: SlotLease;
      held: number;
      bound: boolean;
      resetsInMs: number[];
      /** Each window's count with this take, in order. */
      used: number[];
    }
  | { ok: false; refused: 'slot'; held: number }
  | { ok: false; refused: 'window'; window: number; usage: WindowUsage }
  | { ok: false; refused: 'stale' };

/** Concurrency slots: at most `limit` leases per key; a lease expires on its own after `leaseMs`. */
export interface ConcurrencySlots {
  acquire(key: string, limit: number, leaseMs: number): Promise<AcquireResult>;
  release(lease: SlotLease): Promise<void>;
  held(key: string): Promise<number>;
  /**
   * Tie a lease to the job it admitted, in the store, so whichever relay sees the job end (this
   * one, another instance, or this one after a restart) can release it by job id.
   */
  bind(jobId: string, lease: SlotLease, leaseMs: number): Promise<void>;
  /** Release the lease bound to a job; a lease bound after this (a very fast job) goes at once. */
  releaseJob(jobId: string): Promise<void>;
  /**
   * Take a slot and count in every window, all or nothing, in one atomic step (and bind the
   * slot to `take.jobId` when given): nothing is counted for a refusal, and no other admission
   * can come between the checks and the counts. Where a store offers it (Redis: one script,
   * one round trip); otherwise the policy takes each in turn.
   */
  acquireCounted?(
    key: string,
    limit: number,
    leaseMs: number,
    take: CountedTake,
  ): Promise<CountedResult>;
}

/** How long a job's end is remembered when it is seen before its lease is bound. */
const FINISHED_EARLY_MS = 10 * 60_000;

// Leases are members of a sorted set scored by expiry; expired ones are dropped before counting.
// TIME is Redis's clock, so instances with skewed clocks agree.
const ACQUIRE_LUA = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, n + 1}
`;
const HELD_LUA = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
`;

// A binding is `leaseId|slotsKey`; `!` marks a job that ended before it was bound.
const BIND_LUA = `
if redis.call('GET', KEYS[1]) == '!' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. KEYS[2], 'PX', ARGV[2])
return 1
`;
const RELEASE_JOB_LUA = `
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], '!', 'PX', ARGV[1])
  return 0
end
if v == '!' then return 0 end
local bar = string.find(v, '|', 1, true)
redis.call('ZREM', string.sub(v, bar + 1), string.sub(v, 1, bar - 1))
redis.call('DEL', KEYS[1])
return 1
`;

// The slot, then each window, checked; all counted only if everything fits. The windows are
// rate-limiter-flexible's own keys, counted as its script counts them (a key starts its window
// with its first count and expires with it), so its reads and refunds work on them unchanged.
// A refused window is started as that library's consume-then-refund starts it, and the windows
// before it too: refusals leave the windows as they were before this script.
// With a version key, the settings the limits came from are checked first: if they changed, the
// script takes nothing and answers {2}. Granted: {1, slots held, each window's ms left, each
// window's count}.
const ACQUIRE_COUNTED_LUA = `
if KEYS[3] ~= '' and (redis.call('GET', KEYS[3]) or '0') ~= ARGV[6] then return {2} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
local points = tonumber(ARGV[4])
local seconds = ARGV[5]
local windows = #KEYS - 3
for i = 1, windows do
  local used = tonumber(redis.call('GET', KEYS[i + 3]) or '0')
  if used + points > tonumber(ARGV[6 + i]) then
    for j = 1, i do redis.call('SET', KEYS[j + 3], 0, 'EX', seconds, 'NX') end
    return {-i, used, redis.call('PTTL', KEYS[i + 3])}
  end
end
local out = {1, n + 1}
local counts = {}
for i = 1, windows do
  local key = KEYS[i + 3]
  redis.call('SET', key, 0, 'EX', seconds, 'NX')
  counts[i] = redis.call('INCRBY', key, points)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 then
    redis.call('EXPIRE', key, seconds)
    ttl = 1000 * seconds
  end
  out[#out + 1] = ttl
end
for i = 1, windows do out[#out + 1] = counts[i] end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3] .. '|' .. KEYS[1], 'PX', ARGV[2])
end
return out
`;

/** Slots in Redis, shared by every relay instance. */
export class RedisConcurrencySlots implements ConcurrencySlots {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
    // Sent by its SHA (EVALSHA), not its text, on every admission.
    if (!('imagineAcquireCounted' in redis))
      redis.defineCommand('imagineAcquireCounted', { lua: ACQUIRE_COUNTED_LUA });
  }

  async acquireCounted(
    key: string,
    limit: number,
    leaseMs: number,
    take: CountedTake,
  ): Promise<CountedResult> {
    const id = newLeaseId();
    const slotsKey = `${this.#prefix}slots:${key}`;
    const bindKey = take.jobId === undefined ? '' : `${this.#prefix}slotjob:${take.jobId}`;
    const keys = [
      slotsKey,
      bindKey,
      take.settings?.versionKey ?? '',
      ...take.windows.map((w) => w.key),
    ];
    const run = (
      this.#redis as unknown as Record<string, (...args: unknown[]) => Promise<number[]>>
    ).imagineAcquireCounted;
    const out = await run!.call(
      this.#redis,
      keys.length,
      ...keys,
      String(limit),
      String(Math.ceil(leaseMs)),
      id,
      String(take.points),
      String(take.windowSeconds),
      take.settings?.version ?? '',
      ...take.windows.map((w) => String(w.limit)),
    );
    const [status = 0, a = 0, b = 0] = out;
    if (status === 2) return { ok: false, refused: 'stale' };
    if (status === 0) return { ok: false, refused: 'slot', held: a };
    if (status < 0)
      return {
        ok: false,
        refused: 'window',
        window: -status - 1,
        usage: { used: a, resetsInMs: b },
      };
    return {
      ok: true,
      lease: { key, id },
      held: a,
      bound: take.jobId !== undefined,
      resetsInMs: out.slice(2, 2 + take.windows.length),
      used: out.slice(2 + take.windows.length),
    };
  }

  async acquire(key: string, limit: number, leaseMs: number): Promise<AcquireResult> {
    const id = newLeaseId();
    const fullKey = `${this.#prefix}slots:${key}`;
    const [ok, held] = (await this.#redis.eval(
      ACQUIRE_LUA,
      1,
      fullKey,
      String(limit),
      String(Math.ceil(leaseMs)),
      id,
    )) as [number, number];
    return ok === 1 ? { ok: true, lease: { key, id }, held } : { ok: false, held };
  }

  async release(lease: SlotLease): Promise<void> {
    await this.#redis.zrem(`${this.#prefix}slots:${lease.key}`, lease.id);
  }

  async held(key: string): Promise<number> {
    return (await this.#redis.eval(HELD_LUA, 1, `${this.#prefix}slots:${key}`)) as number;
  }

  async bind(jobId: string, lease: SlotLease, leaseMs: number): Promise<void> {
    await this.#redis.eval(
      BIND_LUA,
      2,
      `${this.#prefix}slotjob:${jobId}`,
      `${this.#prefix}slots:${lease.key}`,
      lease.id,
      String(Math.ceil(leaseMs)),
    );
  }

  async releaseJob(jobId: string): Promise<void> {
    await this.#redis.eval(
      RELEASE_JOB_LUA,
      1,
      `${this.#prefix}slotjob:${jobId}`,
      String(FINISHED_EARLY_MS),
    );
  }
}

/** Slots in this process's memory. */
export class MemoryConcurrencySlots implements ConcurrencySlots {
  readonly #slots = new Map<string, Map<string, number>>();
  /** The latest expiry in each key's lease map (a Map cannot tell its last entry cheaply). */
  readonly #lastExpiry = new WeakMap<Map<string, number>, number>();
  /** Job id → its lease (or none: the job ended before it was bound), until when to keep it. */
  readonly #jobs = new Map<string, { lease: SlotLease | undefined; until: number }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /**
   * The key's unexpired leases. Leases are kept in expiry order (see {@link #insertLease}), so
   * dropping the expired ones stops at the first live one: no scan of the rest.
   */
  #live(key: string): Map<string, number> {
    const leases = this.#slots.get(key) ?? new Map<string, number>();
    const now = this.#now();
    for (const [id, until] of leases) {
      if (until > now) break;
      leases.delete(id);
    }
    if (leases.size === 0) this.#slots.delete(key);
    return leases;
  }

  /** Add a lease keeping the map in expiry order (a shorter lease than the last is rare). */
  #insertLease(leases: Map<string, number>, id: string, until: number): void {
    const last = this.#lastExpiry.get(leases);
    if (last === undefined || leases.size === 0 || until >= last) {
      leases.set(id, until);
      this.#lastExpiry.set(leases, until);
      return;
    }
    const sorted = [...leases, [id, until] as [string, number]].sort((a, b) => a[1] - b[1]);
    leases.clear();
    for (const [k, v] of sorted) leases.set(k, v);
  }

  async acquire(key: string, limit: number, leaseMs: number): Promise<AcquireResult> {
    const leases = this.#live(key);
    if (leases.size >= limit) return { ok: false, held: leases.size };
    const id = newLeaseId();
    this.#insertLease(leases, id, this.#now() + leaseMs);
    this.#slots.set(key, leases);
    return { ok: true, lease: { key, id }, held: leases.size };
  }

  async release(lease: SlotLease): Promise<void> {
    const leases = this.#slots.get(lease.key);
    leases?.delete(lease.id);
    if (leases?.size === 0) this.#slots.delete(lease.key);
  }

  async held(key: string): Promise<number> {
    return this.#live(key).size;
  }

  /**
   * Forget bindings past their time, oldest first, stopping at the first one still kept: each
   * binding is dropped once, so the cost per job stays the same however many are outstanding.
   * (Bindings are added in time order; one kept longer than a later one only waits for it.)
   */
  #prune(): void {
    const now = this.#now();
    for (const [id, entry] of this.#jobs) {
      if (entry.until > now) break;
      this.#jobs.delete(id);
    }
  }

  async bind(jobId: string, lease: SlotLease, leaseMs: number): Promise<void> {
    const entry = this.#jobs.get(jobId);
    if (entry && entry.lease === undefined) {
      this.#jobs.delete(jobId);
      await this.release(lease);
      return;
    }
    this.#prune();
    this.#jobs.set(jobId, { lease, until: this.#now() + leaseMs });
  }

  async releaseJob(jobId: string): Promise<void> {
    const entry = this.#jobs.get(jobId);
    if (entry?.lease) {
      this.#jobs.delete(jobId);
      await this.release(entry.lease);
      return;
    }
    if (entry) return;
    this.#prune();
    this.#jobs.set(jobId, { lease: undefined, until: this.#now() + FINISHED_EARLY_MS });
  }
}
