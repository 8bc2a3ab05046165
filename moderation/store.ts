/**
 * Where moderation settings live so they survive restarts: Redis when `REDIS_URL` is set
 * (shared by every relay instance), otherwise an embedded SQLite file under `DATA_DIR`.
 * Each change and its audit line are written together, atomically.
 */
import type { AuditEntry, LimitChanges, ScopeSettings } from './settings.ts';
import type { UserDefaults } from './user-settings.ts';

/** One change a moderator makes to a scope. */
export type SettingsChange =
  | { kind: 'limits'; channelId?: string; changes: LimitChanges }
  | { kind: 'words-add'; words: string[] }
  | { kind: 'words-remove'; words: string[] }
  | { kind: 'channel-allow'; channelId: string }
  | { kind: 'channel-deny'; channelId: string }
  | { kind: 'channels-clear' }
  /** No change: an audit line only (output-safety decisions, moderators' approvals). */
  | { kind: 'note' };

/** Most audit lines kept per scope (older ones go first). */
export const AUDIT_KEEP = 200;

/** A read of a scope's settings from memory, with the version it was read at. */
export interface RecentSettings {
  settings: ScopeSettings;
  version: string;
  /** Compared with the store on this read (false: as last read here, maybe changed since). */
  checked: boolean;
}

/** The settings store port. */
export interface SettingsStore {
  readonly kind: 'redis' | 'sqlite';
  /** A scope's stored overrides (empty when it has none), current as of this call. */
  get(scopeKey: string): Promise<ScopeSettings>;
  /**
   * What this relay last read of a scope, without asking the store whether it changed (a read
   * when it has none). Whoever acts on it checks `version` against {@link versionKey} in the
   * same atomic step, and calls {@link forget} when it has changed.
   */
  recent?(scopeKey: string): Promise<RecentSettings>;
  /** The store key holding a scope's version (incremented by every change). */
  versionKey?(scopeKey: string): string;
  /** Drop what is kept of a scope (found out of date). */
  forget?(scopeKey: string): void;
  /** Apply a change and log it, in one atomic step. */
  apply(scopeKey: string, change: SettingsChange, audit: AuditEntry): Promise<void>;
  /** The newest audit lines first. */
  audit(scopeKey: string, limit: number): Promise<AuditEntry[]>;
  /** A user's own defaults (`platform:userId`), `{}` when none are stored. */
  getUser(userKey: string): Promise<UserDefaults>;
  /** Replace a user's defaults; empty defaults remove the user's entry. */
  setUser(userKey: string, defaults: UserDefaults): Promise<void>;
  close(): Promise<void>;
}
