/** The Redis settings store: a hash of limits, sets of words and channels, a capped audit list. */
import type { Redis } from 'ioredis';
import {
  type AuditEntry,
  emptyScopeSettings,
  freezeSettings,
  isValidLimit,
  type ScopeSettings,
} from './settings.ts';
import {
  AUDIT_KEEP,
  type RecentSettings,
  type SettingsChange,
  type SettingsStore,
} from './store.ts';
import { readUserDefaults, type UserDefaults } from './user-settings.ts';

const SCOPE_FIELD = '*';

function limitField(channelId: string | undefined, key: string): string {
  return `${channelId === undefined ? SCOPE_FIELD : `#${channelId}`}|${key}`;
}

/** Scopes whose settings are kept in memory at most. */
const CACHE_MAX = 10_000;

/**
 * Settings kept in Redis under `prefix` (e.g. `imagine:`). Every change also increments the
 * scope's version key in the same transaction; a read asks only for that version (one `GET`)
 * and answers from memory while it is the one its copy was read at, so a change made through
 * any relay sharing the Redis is seen by the next read everywhere.
 */
export class RedisSettingsStore implements SettingsStore {
  readonly kind = 'redis' as const;
  readonly #redis: Redis;
  readonly #prefix: string;
  /** Frozen copies of scopes' settings with the version they were read at. */
  readonly #cache = new Map<string, { version: string; settings: ScopeSettings }>();

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  #key(
    scopeKey: string,
    what: 'limits' | 'words' | 'allow' | 'deny' | 'audit' | 'version',
  ): string {
    return `${this.#prefix}mod:${scopeKey}:${what}`;
  }

  async get(scopeKey: string): Promise<ScopeSettings> {
    const kept = this.#cache.get(scopeKey);
    if (kept && ((await this.#redis.get(this.#key(scopeKey, 'version'))) ?? '0') === kept.version)
      return kept.settings;
    return (await this.#readAndKeep(scopeKey)).settings;
  }

  async recent(scopeKey: string): Promise<RecentSettings> {
    const kept = this.#cache.get(scopeKey);
    if (kept) return { ...kept, checked: false };
    return { ...(await this.#readAndKeep(scopeKey)), checked: true };
  }

  versionKey(scopeKey: string): string {
    return this.#key(scopeKey, 'version');
  }

  forget(scopeKey: string): void {
    this.#cache.delete(scopeKey);
  }

  async #readAndKeep(scopeKey: string): Promise<{ version: string; settings: ScopeSettings }> {
    const { version, settings } = await this.#read(scopeKey);
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    const kept = { version, settings: freezeSettings(settings) };
    this.#cache.set(scopeKey, kept);
    return kept;
  }

  async #read(scopeKey: string): Promise<{ version: string; settings: ScopeSettings }> {
    const results = await this.#redis
      .multi()
      .get(this.#key(scopeKey, 'version'))
      .hgetall(this.#key(scopeKey, 'limits'))
      .smembers(this.#key(scopeKey, 'words'))
      .smembers(this.#key(scopeKey, 'allow'))
      .smembers(this.#key(scopeKey, 'deny'))
      .exec();
    if (!results) throw new Error('redis transaction aborted');
    for (const [err] of results) if (err) throw err;
    const [version, limits, words, allow, deny] = results.map(([, v]) => v) as [
      string | null,
      Record<string, string>,
      string[],
      string[],
      string[],
    ];
    const settings = emptyScopeSettings();
    for (const [field, raw] of Object.entries(limits)) {
      const bar = field.lastIndexOf('|');
      const where = field.slice(0, bar);
      const key = field.slice(bar + 1);
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch {
        continue;
      }
      if (!isValidLimit(key, value)) continue;
      if (where === SCOPE_FIELD) Object.assign(settings.limits, { [key]: value });
      else if (where.startsWith('#')) {
        const channel = where.slice(1);
        settings.channels[channel] = { ...settings.channels[channel], [key]: value };
      }
    }
    settings.blockedWords = words.sort();
    settings.allowedChannels = allow.sort();
    settings.deniedChannels = deny.sort();
    return { version: version ?? '0', settings };
  }

  async apply(scopeKey: string, change: SettingsChange, audit: AuditEntry): Promise<void> {
    const tx = this.#redis.multi();
    switch (change.kind) {
      case 'limits': {
        const key = this.#key(scopeKey, 'limits');
        for (const [name, value] of Object.entries(change.changes)) {
          const field = limitField(change.channelId, name);
          if (value === null) tx.hdel(key, field);
          else if (value !== undefined) tx.hset(key, field, JSON.stringify(value));
        }
        break;
      }
      case 'words-add':
        if (change.words.length > 0) tx.sadd(this.#key(scopeKey, 'words'), ...change.words);
        break;
      case 'words-remove':
        if (change.words.length > 0) tx.srem(this.#key(scopeKey, 'words'), ...change.words);
        break;
      case 'channel-allow':
        tx.sadd(this.#key(scopeKey, 'allow'), change.channelId);
        tx.srem(this.#key(scopeKey, 'deny'), change.channelId);
        break;
      case 'channel-deny':
        tx.srem(this.#key(scopeKey, 'allow'), change.channelId);
        tx.sadd(this.#key(scopeKey, 'deny'), change.channelId);
        break;
      case 'channels-clear':
        tx.del(this.#key(scopeKey, 'allow'), this.#key(scopeKey, 'deny'));
        break;
      case 'note':
        break;
    }
    // An audit line alone changes no setting: kept copies stay valid.
    if (change.kind !== 'note') tx.incr(this.#key(scopeKey, 'version'));
    this.#cache.delete(scopeKey);
    tx.lpush(this.#key(scopeKey, 'audit'), JSON.stringify(audit));
    tx.ltrim(this.#key(scopeKey, 'audit'), 0, AUDIT_KEEP - 1);
    const results = await tx.exec();
    if (!results) throw new Error('redis transaction aborted');
    for (const [err] of results) if (err) throw err;
  }

  async audit(scopeKey: string, limit: number): Promise<AuditEntry[]> {
    const lines = await this.#redis.lrange(this.#key(scopeKey, 'audit'), 0, limit - 1);
    const out: AuditEntry[] = [];
    for (const line of lines) {
      try {
        out.push(JSON.parse(line) as AuditEntry);
      } catch {
        // A corrupt line is skipped rather than hiding the rest of the log.
      }
    }
    return out;
  }

  async getUser(userKey: string): Promise<UserDefaults> {
    const raw = await this.#redis.get(`${this.#prefix}user:${userKey}`);
    if (raw === null) return {};
    try {
      return readUserDefaults(JSON.parse(raw));
    } catch {
      return {};
    }
  }

  async setUser(userKey: string, defaults: UserDefaults): Promise<void> {
    const key = `${this.#prefix}user:${userKey}`;
    if (Object.keys(defaults).length === 0) await this.#redis.del(key);
    else await this.#redis.set(key, JSON.stringify(defaults));
  }

  async close(): Promise<void> {
    // The Redis connection belongs to whoever made it (the policy closes it).
  }
}
