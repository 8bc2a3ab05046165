/**
 * Events API deliveries Slack repeats: when an answer is late or fails, Slack sends the same
 * event again (`X-Slack-Retry-Num`, same `event_id`), up to three times. A DM is a prompt, so a
 * repeat must not start a second job: each event id is remembered, in Redis with a TTL when
 * REDIS_URL is set (every relay sees it, and it survives a restart), in memory otherwise.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { loadRedis } from '../redis.ts';

/** Slack retries within about five minutes; an hour is ample. */
export const EVENT_ID_TTL_MS = 60 * 60 * 1000;

/** Remembers event ids. */
export interface SeenEvents {
  /** `true` the first time `eventId` is seen, `false` for a repeat. */
  firstTime(eventId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Event ids in this process's memory (one relay). */
export class MemorySeenEvents implements SeenEvents {
  private readonly seen = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(ttlMs = EVENT_ID_TTL_MS, now: () => number = Date.now) {
    this.ttlMs = ttlMs;
    this.now = now;
  }

  async firstTime(eventId: string): Promise<boolean> {
    const now = this.now();
    for (const [id, expires] of this.seen) {
      if (expires > now) break;
      this.seen.delete(id);
    }
    if ((this.seen.get(eventId) ?? 0) > now) return false;
    this.seen.set(eventId, now + this.ttlMs);
    return true;
  }

  async close(): Promise<void> {}
}

/** Event ids in Redis (`SET NX PX`), shared by every relay; memory while Redis is down. */
export class RedisSeenEvents implements SeenEvents {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly local = new MemorySeenEvents();

  constructor(url: string, prefix: string, logger: Logger) {
    this.redis = new (loadRedis())(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      lazyConnect: false,
    });
    this.redis.on('error', (err) => logger.debug({ err }, 'slack event id store: redis error'));
    this.prefix = prefix;
    this.logger = logger;
  }

  async firstTime(eventId: string): Promise<boolean> {
    const local = await this.local.firstTime(eventId);
    if (!local) return false;
    try {
      const set = await this.redis.set(
        `${this.prefix}slack:event:${eventId}`,
        '1',
        'PX',
        EVENT_ID_TTL_MS,
        'NX',
      );
      return set === 'OK';
    } catch (err) {
      // Better a rare repeat than a lost prompt: this relay's memory still catches its own.
      this.logger.warn({ err }, 'slack event id not shared (redis unavailable)');
      return true;
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
