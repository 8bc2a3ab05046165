/** Builders for moderation tests: a policy on the real Redis server or on the embedded store. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { inject } from 'vitest';
import type { Job, JobParams, Origin } from '../../contracts/job.ts';
import {
  MemoryConcurrencySlots,
  RedisConcurrencySlots,
  WindowCounters,
} from '../../moderation/counters.ts';
import { ModerationPolicy } from '../../moderation/policy.ts';
import { RedisSettingsStore } from '../../moderation/redis-store.ts';
import type { Limits } from '../../moderation/settings.ts';
import { SqliteSettingsStore } from '../../moderation/sqlite-store.ts';
import {
  type AdmissionContext,
  createSubmitter,
  type JobRegistry,
  type SubmitterOptions,
} from '../../submit/submit.ts';

/** Defaults roomy enough that a test only meets the limit it sets. */
export const ROOMY: Limits = {
  imagesPerUser: 1000,
  imagesPerScope: 100_000,
  windowSeconds: 3600,
  concurrentPerUser: 1000,
  maxQueueLength: 1000,
  maxImageSide: 2048,
  maxImagesPerJob: 4,
  maxSteps: 50,
  builtinBlockedWords: true,
  safety: 'spoiler',
  safetyThreshold: 0.6,
  safetyAgeRestricted: 'same',
  reviewChannel: '',
  models: [],
};

/** A policy and how to reopen its store as after a restart. */
export interface Backend {
  name: 'redis' | 'embedded';
  make(
    defaults?: Partial<Limits>,
    extra?: { slackAdminUsers?: string[]; models?: string[] },
  ): Promise<ModerationPolicy>;
  /** Close every policy made. */
  cleanup(): Promise<void>;
}

/** A fresh key prefix so tests sharing one Redis never see each other's counts. */
export function uniquePrefix(): string {
  return `test-${randomBytes(6).toString('hex')}:`;
}

/** A Redis-backed backend with its own key prefix. */
export function redisBackend(): Backend {
  const prefix = uniquePrefix();
  const made: ModerationPolicy[] = [];
  return {
    name: 'redis',
    async make(defaults = {}, extra = {}) {
      const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
      const policy = new ModerationPolicy({
        defaults: { ...ROOMY, ...defaults },
        store: new RedisSettingsStore(redis, prefix),
        counters: new WindowCounters({ redis, prefix }),
        slots: new RedisConcurrencySlots(redis, prefix),
        leaseMs: 60_000,
        logger: pino({ level: 'silent' }),
        ...(extra.slackAdminUsers ? { slackAdminUsers: extra.slackAdminUsers } : {}),
        ...(extra.models ? { models: extra.models } : {}),
        onClose: async () => {
          await redis.quit();
        },
      });
      made.push(policy);
      return policy;
    },
    async cleanup() {
      for (const p of made.splice(0)) await p.close().catch(() => {});
    },
  };
}

/** The embedded backend: memory counters, a SQLite file in a fresh directory. */
export function embeddedBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), 'imagine-moderation-'));
  const made: ModerationPolicy[] = [];
  return {
    name: 'embedded',
    async make(defaults = {}, extra = {}) {
      const policy = new ModerationPolicy({
        defaults: { ...ROOMY, ...defaults },
        store: new SqliteSettingsStore(join(dir, 'moderation.sqlite')),
        counters: new WindowCounters({ prefix: 'test:' }),
        slots: new MemoryConcurrencySlots(),
        leaseMs: 60_000,
        logger: pino({ level: 'silent' }),
        ...(extra.slackAdminUsers ? { slackAdminUsers: extra.slackAdminUsers } : {}),
        ...(extra.models ? { models: extra.models } : {}),
      });
      made.push(policy);
      return policy;
    },
    async cleanup() {
      for (const p of made.splice(0)) await p.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Both backends, for `describe.each`. */
export const BACKENDS: Array<[string, () => Backend]> = [
  ['redis', redisBackend],
  ['embedded (memory + SQLite)', embeddedBackend],
];

const PARAMS: JobParams = { width: 1024, height: 1024, seed: 1, steps: 4 };

/** An admission context for a Discord user in a guild channel. */
export function ctx(
  over: Partial<Origin> & {
    prompt?: string;
    params?: Partial<JobParams>;
    queueLength?: number;
    count?: number;
  } = {},
): AdmissionContext {
  const { prompt, params, queueLength, count, ...origin } = over;
  return {
    prompt: prompt ?? 'a fox in space',
    params: { ...PARAMS, ...params },
    count: count ?? 1,
    origin: { platform: 'discord', userId: 'u1', scopeId: 'g1', channelId: 'c1', ...origin },
    queueLength: queueLength ?? 0,
  };
}

/** The coded error an admission refused with (fails the test when it was granted). */
export async function refusal(
  promise: Promise<unknown>,
): Promise<{ code: string; retryAfterSeconds: number | undefined }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code: string; retryAfterSeconds: number | undefined };
    return { code: e.code, retryAfterSeconds: e.retryAfterSeconds };
  }
  throw new Error('expected a refusal, got an admission');
}

/**
 * A submitter admitting through `policy` onto a queue that keeps what it is sent in `sent` (no
 * relay: positions are 0), with `extra` options (models, default count, input policy).
 */
export function submitterFor(
  policy: ModerationPolicy,
  sent: Job[],
  extra: Partial<SubmitterOptions> = {},
) {
  const registry: JobRegistry = {
    registerQueued: () => ({ position: 0 }),
    queuedCount: 0,
    forget: () => {},
  };
  return createSubmitter({
    queue: { send: async (job) => void sent.push(job) },
    registry,
    secret: 'x'.repeat(32),
    defaultSteps: 4,
    jobTtlSeconds: 900,
    admission: policy,
    logger: pino({ level: 'silent' }),
    ...extra,
  });
}
