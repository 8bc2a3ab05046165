/**
 * Moderation and rate limits, built from configuration: Redis-backed counters and settings when
 * `REDIS_URL` is set, otherwise memory counters and a SQLite settings file under `DATA_DIR`.
 */
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { AdmissionPolicy } from '../contracts/admission.ts';
import type { Config } from '../contracts/config.ts';
import { MemoryConcurrencySlots, RedisConcurrencySlots, WindowCounters } from './counters.ts';
import { ModerationPolicy } from './policy.ts';
import { RedisSettingsStore } from './redis-store.ts';
import { defaultLimitsFromConfig, webDefaultsFromConfig } from './settings.ts';
import { SqliteSettingsStore } from './sqlite-store.ts';

export type { AdminCommand, AdminReply, AdminRequest } from './admin.ts';
export {
  parseAdminText,
  runAdminCommand,
  runAdminText,
  runQuotaCommand,
  runUserSettingsCommand,
} from './admin.ts';
export type { ModeratorEvidence, SlackUserRole } from './permissions.ts';
export { DISCORD_MODERATOR_PERMISSIONS, discordCanModerate } from './permissions.ts';
export { formatQuota, ModerationPolicy, type Quota } from './policy.ts';
export {
  parseUserDefault,
  parseUserSettingsText,
  type UserSettingsCommand,
  UserSettingsError,
} from './user-settings.ts';

/** File name of the embedded settings store inside DATA_DIR. */
export const SETTINGS_FILE = 'moderation.sqlite';

function commaList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Build the moderation policy a configuration asks for. Call `close()` on stop. */
export async function admissionFromConfig(
  config: Readonly<Config>,
  logger: Logger,
): Promise<ModerationPolicy> {
  const prefix = config.REDIS_KEY_PREFIX;
  const common = {
    defaults: defaultLimitsFromConfig(config),
    webDefaults: webDefaultsFromConfig(config),
    extraBlockedWords: commaList(config.BLOCKED_WORDS),
    slackAdminUsers: commaList(config.SLACK_ADMIN_USERS),
    models: config.MODELS,
    // As long as the relay keeps a job's record: queued wait, retries and generation.
    leaseMs: (config.JOB_TTL_SECONDS + 60) * 1000 + config.GENERATOR_TIMEOUT_MS,
    logger: logger.child({ part: 'moderation' }),
  };
  if (config.REDIS_URL) {
    // Loaded only when configured: an embedded relay holds no Redis client in memory.
    const { Redis } = await import('ioredis');
    const redis = new Redis(config.REDIS_URL, {
      lazyConnect: true,
      // Fail a request quickly while Redis is away: a clear 503 beats a hanging /imagine.
      maxRetriesPerRequest: 1,
      connectTimeout: 5000,
    });
    redis.on('error', (err) => logger.warn({ err }, 'moderation redis error'));
    await redis.connect();
    logger.info('moderation: limits and settings in Redis');
    return new ModerationPolicy({
      ...common,
      store: new RedisSettingsStore(redis, prefix),
      counters: new WindowCounters({ redis, prefix }),
      slots: new RedisConcurrencySlots(redis, prefix),
      onClose: async () => {
        await redis.quit().catch(() => redis.disconnect());
      },
    });
  }
  const file = resolve(join(config.DATA_DIR, SETTINGS_FILE));
  logger.info({ file }, 'moderation: limits in memory, settings in SQLite');
  return new ModerationPolicy({
    ...common,
    store: new SqliteSettingsStore(file),
    counters: new WindowCounters({ prefix }),
    slots: new MemoryConcurrencySlots(),
  });
}

/** Narrow a relay's admission policy to the moderation policy (for the admin commands). */
export function asModeration(policy: AdmissionPolicy | undefined): ModerationPolicy | undefined {
  return policy instanceof ModerationPolicy ? policy : undefined;
}
