/** The embedded settings store: one SQLite file (Node's built-in `node:sqlite`) under DATA_DIR. */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import {
  type AuditEntry,
  emptyScopeSettings,
  freezeSettings,
  isValidLimit,
  type ScopeSettings,
} from './settings.ts';
import { AUDIT_KEEP, type SettingsChange, type SettingsStore } from './store.ts';
import { readUserDefaults, type UserDefaults } from './user-settings.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS limits (
  scope TEXT NOT NULL, channel TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (scope, channel, key)
);
CREATE TABLE IF NOT EXISTS blocked_words (
  scope TEXT NOT NULL, word TEXT NOT NULL, PRIMARY KEY (scope, word)
);
CREATE TABLE IF NOT EXISTS channels (
  scope TEXT NOT NULL, channel TEXT NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('allow', 'deny')),
  PRIMARY KEY (scope, channel)
);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, at INTEGER NOT NULL,
  actor_id TEXT NOT NULL, actor_name TEXT, action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_scope ON audit (scope, id);
CREATE TABLE IF NOT EXISTS user_defaults (
  user TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL
);
`;

/** Channel column value for scope-wide limits. */
const SCOPE_ROW = '';

/** Scopes and users whose settings are kept in memory at most (each is a few small rows). */
const CACHE_MAX = 10_000;

/**
 * Settings kept in a SQLite file. Writes are synchronous transactions, so atomic in-process.
 * Reads are served from memory while nothing changed: a write here drops what it touches, and a
 * commit by any other connection to the file (another process, another store) changes SQLite's
 * `PRAGMA data_version`, which every read checks first (one tiny statement), dropping them all.
 * A moderator's change is therefore seen by the very next read, wherever it was made.
 */
export class SqliteSettingsStore implements SettingsStore {
  readonly kind = 'sqlite' as const;
  readonly #db: DatabaseSync;
  /** The reads every request makes, compiled once (preparing costs more than the query). */
  readonly #prepared = new Map<string, StatementSync>();
  readonly #dataVersion: StatementSync;
  #seenVersion: number | bigint = -1;
  /** Read-only (frozen) copies, valid while {@link #seenVersion} is the file's version. */
  readonly #scopes = new Map<string, ScopeSettings>();
  readonly #users = new Map<string, UserDefaults>();

  /** Open (creating) the file; `:memory:` is accepted for tests. */
  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.#db = new DatabaseSync(file);
    // Several processes (tests, a relay and a CLI) may share the file: wait rather than fail.
    this.#db.exec('PRAGMA busy_timeout = 5000');
    if (file !== ':memory:') this.#db.exec('PRAGMA journal_mode = WAL');
    this.#db.exec(SCHEMA);
    this.#dataVersion = this.#db.prepare('PRAGMA data_version');
  }

  /** Drop every cached read if another connection has committed since the last check. */
  #checkVersion(): void {
    const { data_version: version } = this.#dataVersion.get() as { data_version: number | bigint };
    if (version === this.#seenVersion) return;
    this.#seenVersion = version;
    this.#scopes.clear();
    this.#users.clear();
  }

  #statement(sql: string): StatementSync {
    let statement = this.#prepared.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#prepared.set(sql, statement);
    }
    return statement;
  }

  async get(scopeKey: string): Promise<ScopeSettings> {
    this.#checkVersion();
    let settings = this.#scopes.get(scopeKey);
    if (!settings) {
      settings = freezeSettings(this.#read(scopeKey));
      if (this.#scopes.size >= CACHE_MAX) this.#scopes.clear();
      this.#scopes.set(scopeKey, settings);
    }
    return settings;
  }

  #read(scopeKey: string): ScopeSettings {
    const settings = emptyScopeSettings();
    const limits = this.#statement('SELECT channel, key, value FROM limits WHERE scope = ?').all(
      scopeKey,
    ) as Array<{ channel: string; key: string; value: string }>;
    for (const row of limits) {
      let value: unknown;
      try {
        value = JSON.parse(row.value);
      } catch {
        continue;
      }
      if (!isValidLimit(row.key, value)) continue;
      if (row.channel === SCOPE_ROW) Object.assign(settings.limits, { [row.key]: value });
      else settings.channels[row.channel] = { ...settings.channels[row.channel], [row.key]: value };
    }
    settings.blockedWords = (
      this.#statement('SELECT word FROM blocked_words WHERE scope = ? ORDER BY word').all(
        scopeKey,
      ) as Array<{ word: string }>
    ).map((r) => r.word);
    const channels = this.#statement(
      'SELECT channel, mode FROM channels WHERE scope = ? ORDER BY channel',
    ).all(scopeKey) as Array<{ channel: string; mode: 'allow' | 'deny' }>;
    settings.allowedChannels = channels.filter((c) => c.mode === 'allow').map((c) => c.channel);
    settings.deniedChannels = channels.filter((c) => c.mode === 'deny').map((c) => c.channel);
    return settings;
  }

  async apply(scopeKey: string, change: SettingsChange, audit: AuditEntry): Promise<void> {
    const db = this.#db;
    // Dropped before and after: a failed write may have half-happened in memory only.
    this.#scopes.delete(scopeKey);
    db.exec('BEGIN IMMEDIATE');
    try {
      switch (change.kind) {
        case 'limits': {
          const channel = change.channelId ?? SCOPE_ROW;
          const upsert = db.prepare(
            'INSERT INTO limits (scope, channel, key, value) VALUES (?, ?, ?, ?) ' +
              'ON CONFLICT (scope, channel, key) DO UPDATE SET value = excluded.value',
          );
          const remove = db.prepare(
            'DELETE FROM limits WHERE scope = ? AND channel = ? AND key = ?',
          );
          for (const [key, value] of Object.entries(change.changes)) {
            if (value === null) remove.run(scopeKey, channel, key);
            else if (value !== undefined) upsert.run(scopeKey, channel, key, JSON.stringify(value));
          }
          break;
        }
        case 'words-add': {
          const add = db.prepare('INSERT OR IGNORE INTO blocked_words (scope, word) VALUES (?, ?)');
          for (const word of change.words) add.run(scopeKey, word);
          break;
        }
        case 'words-remove': {
          const remove = db.prepare('DELETE FROM blocked_words WHERE scope = ? AND word = ?');
          for (const word of change.words) remove.run(scopeKey, word);
          break;
        }
        case 'channel-allow':
        case 'channel-deny':
          db.prepare(
            'INSERT INTO channels (scope, channel, mode) VALUES (?, ?, ?) ' +
              'ON CONFLICT (scope, channel) DO UPDATE SET mode = excluded.mode',
          ).run(scopeKey, change.channelId, change.kind === 'channel-allow' ? 'allow' : 'deny');
          break;
        case 'channels-clear':
          db.prepare('DELETE FROM channels WHERE scope = ?').run(scopeKey);
          break;
        case 'note':
          break;
      }
      db.prepare(
        'INSERT INTO audit (scope, at, actor_id, actor_name, action) VALUES (?, ?, ?, ?, ?)',
      ).run(scopeKey, audit.at, audit.actorId, audit.actorName ?? null, audit.action);
      db.prepare(
        'DELETE FROM audit WHERE scope = ? AND id NOT IN ' +
          '(SELECT id FROM audit WHERE scope = ? ORDER BY id DESC LIMIT ?)',
      ).run(scopeKey, scopeKey, AUDIT_KEEP);
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    } finally {
      this.#scopes.delete(scopeKey);
    }
  }

  async audit(scopeKey: string, limit: number): Promise<AuditEntry[]> {
    const rows = this.#db
      .prepare(
        'SELECT at, actor_id, actor_name, action FROM audit WHERE scope = ? ORDER BY id DESC LIMIT ?',
      )
      .all(scopeKey, limit) as Array<{
      at: number;
      actor_id: string;
      actor_name: string | null;
      action: string;
    }>;
    return rows.map((r) => ({
      at: r.at,
      actorId: r.actor_id,
      ...(r.actor_name === null ? {} : { actorName: r.actor_name }),
      action: r.action,
    }));
  }

  async getUser(userKey: string): Promise<UserDefaults> {
    this.#checkVersion();
    let defaults = this.#users.get(userKey);
    if (!defaults) {
      defaults = Object.freeze(this.#readUser(userKey));
      if (this.#users.size >= CACHE_MAX) this.#users.clear();
      this.#users.set(userKey, defaults);
    }
    return defaults;
  }

  #readUser(userKey: string): UserDefaults {
    const row = this.#statement('SELECT value FROM user_defaults WHERE user = ?').get(userKey) as
      | { value: string }
      | undefined;
    if (!row) return {};
    try {
      return readUserDefaults(JSON.parse(row.value));
    } catch {
      return {};
    }
  }

  async setUser(userKey: string, defaults: UserDefaults): Promise<void> {
    this.#users.delete(userKey);
    if (Object.keys(defaults).length === 0)
      this.#db.prepare('DELETE FROM user_defaults WHERE user = ?').run(userKey);
    else
      this.#db
        .prepare(
          'INSERT INTO user_defaults (user, value) VALUES (?, ?) ' +
            'ON CONFLICT (user) DO UPDATE SET value = excluded.value',
        )
        .run(userKey, JSON.stringify(defaults));
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
