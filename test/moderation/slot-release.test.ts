/**
 * A Redis outage must not leak concurrency slots: a release that fails while Redis is away is
 * retried, and the user gets the slot back once Redis returns (not when the lease expires).
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { RedisConcurrencySlots, WindowCounters } from '../../moderation/counters.ts';
import { ModerationPolicy } from '../../moderation/policy.ts';
import { RedisSettingsStore } from '../../moderation/redis-store.ts';
import { capturingLogger } from '../helpers/logs.ts';
import { ctx, ROOMY, uniquePrefix } from './helpers.ts';

describe('concurrency slots across a Redis outage', () => {
  let policy: ModerationPolicy | undefined;
  afterEach(async () => {
    await policy?.close().catch(() => {});
  });

  it('releases retried after Redis comes back free the slots', async () => {
    const prefix = uniquePrefix();
    const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
    const { logger } = capturingLogger('silent');
    policy = new ModerationPolicy({
      defaults: { ...ROOMY, concurrentPerUser: 2 },
      store: new RedisSettingsStore(redis, prefix),
      counters: new WindowCounters({ redis, prefix }),
      slots: new RedisConcurrencySlots(redis, prefix),
      // Long leases: only a release can free these slots within the test.
      leaseMs: 20 * 60_000,
      logger,
      onClose: async () => {
        redis.disconnect();
      },
    });
    const p = policy;
    const user = () => ctx({ userId: 'outage' });
    (await p.admit(user())).confirm('job-1');
    (await p.admit(user())).confirm('job-2');
    await expect
      .poll(async () => redis.exists(`${prefix}slotjob:job-1`, `${prefix}slotjob:job-2`))
      .toBe(2);
    expect((await p.quota(user().origin)).concurrent.inProgress).toBe(2);

    // Redis goes away; both jobs end meanwhile, so both releases fail.
    redis.disconnect();
    p.finished('job-1');
    p.finished('job-2');
    await new Promise((r) => setTimeout(r, 500));
    await redis.connect();

    await expect
      .poll(async () => (await p.quota(user().origin)).concurrent.inProgress, { timeout: 10_000 })
      .toBe(0);
    await expect(p.admit(user())).resolves.toBeDefined();
  });
});
