/**
 * Which instance answers an interaction: the first to claim its id. Discord delivers each
 * interaction to every gateway session of the shard (two relays with `DISCORD_TOKEN` both see
 * it), and a signed HTTP interaction can be sent again by anyone who saw it; either way one
 * interaction must queue one job. With `REDIS_URL` the claim is a `SET NX` with a TTL, shared
 * by every relay; without it, memory (one relay). Redis unreachable: the claim falls back to
 * memory and a duplicate from another relay is caught by Discord's 40060 instead.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { loadRedis } from '../redis.ts';

/** How long a seen interaction id is remembered: its token's whole life and a margin. */
export const CLAIM_TTL_MS = 16 * 60 * 1000;
/** Most interaction ids remembered in memory (the oldest are forgotten first). */
const MEMORY_MAX = 100_000;
/** A claim that Redis has not answered by then is decided in memory (Discord allows 3 s). */
const REDIS_CLAIM_TIMEOUT_MS = 750;

/** Claims on interaction ids. */
export interface InteractionClaims {
  /** True for the first caller with this id (on any instance sharing the store). */
  claim(interactionId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Claims remembered in this process: insertion-ordered, expired by time, bounded. */
export class MemoryClaims implements InteractionClaims {
  private readonly seen = new Map<string, number>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  async claim(interactionId: string): Promise<boolean> {
    return this.claimSync(interactionId);
  }

  /** {@link claim}, synchronously (the Redis fallback). */
  claimSync(interactionId: string): boolean {
    const t = this.now();
    for (const [id, expires] of this.seen) {
      if (expires > t && this.seen.size < MEMORY_MAX) break;
      this.seen.delete(id);
    }
    const expires = this.seen.get(interactionId);
    if (expires !== undefined && expires > t) return false;
    this.seen.set(interactionId, t + CLAIM_TTL_MS);
    return true;
  }

  async close(): Promise<void> {}
}

/** Claims in Redis, shared by every relay on it. */
export class RedisClaims implements InteractionClaims {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly fallback: MemoryClaims;

  constructor(redis: Redis, prefix: string, logger: Logger, now: () => number = Date.now) {
    this.redis = redis;
    this.prefix = prefix;
    this.logger = logger;
    this.fallback = new MemoryClaims(now);
  }

  async claim(interactionId: string): Promise<boolean> {
    // Remember it locally too, so a repeat reaching this relay while Redis is away is caught.
    const local = this.fallback.claimSync(interactionId);
    const key = `${this.prefix}discord:interaction:${interactionId}`;
    try {
      const set = await Promise.race([
        this.redis.set(key, '1', 'PX', CLAIM_TTL_MS, 'NX'),
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error('redis did not answer the claim in time')),
            REDIS_CLAIM_TIMEOUT_MS,
          ).unref(),
        ),
      ]);
      return set === 'OK';
    } catch (err) {
      this.logger.warn({ err }, 'interaction claim: Redis unavailable, deciding in memory');
      return local;
    }
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Claims for a configuration: Redis when a URL is given, memory otherwise. */
export function interactionClaims(opts: {
  redisUrl?: string | undefined;
  keyPrefix?: string | undefined;
  logger: Logger;
  now?: () => number;
}): InteractionClaims {
  if (!opts.redisUrl) return new MemoryClaims(opts.now);
  const redis = new (loadRedis())(opts.redisUrl, {
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
  });
  redis.on('error', (err) => opts.logger.warn({ err }, 'discord claims redis error'));
  return new RedisClaims(redis, opts.keyPrefix ?? 'imagine:', opts.logger, opts.now);
}
