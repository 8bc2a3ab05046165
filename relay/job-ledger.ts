/**
 * What a relay remembers of each job beyond its own memory: the job's id, state and size, never
 * its prompt or image. A relay restarted while a job is queued (or one started later, with
 * Redis) learns the job from here instead of declaring it unknown, and a push for a job that
 * already ended (a replay, a duplicate) is recognised as one. Redis (with a TTL) when REDIS_URL
 * is set, shared by every relay; otherwise a SQLite file under DATA_DIR.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { isTerminal, JOB_STATES, type JobState } from '../contracts/push.ts';

/** File name of the embedded ledger inside DATA_DIR. */
export const LEDGER_FILE = 'jobs.sqlite';

/** One job as the ledger keeps it. */
export interface LedgerEntry {
  jobId: string;
  state: JobState;
  createdAt: number;
  platform?: string | undefined;
  /** The requester's id on its platform (who may cancel it from chat). */
  userId?: string | undefined;
  seed?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  error?: { code: string; message: string } | undefined;
}

/** Where job states outlive one relay process. */
export interface JobLedger {
  /** Record a job's state (fire and forget: a failure is logged, the job goes on). */
  remember(entry: LedgerEntry): void;
  /** The last recorded state of a job, if it is still remembered. */
  recall(jobId: string): Promise<LedgerEntry | undefined>;
  /**
   * Move a job to `entry.state` unless it has already ended, atomically (every relay reading
   * the same ledger sees one winner when a start and a cancel race). Resolves with what was
   * recorded before (undefined: nothing); `applied` is false when that was a final state, which
   * then stays. Rejects when the store cannot be reached.
   */
  transition(entry: LedgerEntry): Promise<{ applied: boolean; previous: LedgerEntry | undefined }>;
  close(): Promise<void>;
}

function parseEntry(text: string | null | undefined): LedgerEntry | undefined {
  if (!text) return undefined;
  try {
    const entry = JSON.parse(text) as LedgerEntry;
    return typeof entry.jobId === 'string' && JOB_STATES.includes(entry.state) ? entry : undefined;
  } catch {
    return undefined;
  }
}

/** What the ledger keeps of a job's record: no prompt, no reply target, no image. */
export function ledgerEntryOf(r: LedgerEntry & Record<string, unknown>): LedgerEntry {
  return {
    jobId: r.jobId,
    state: r.state,
    createdAt: r.createdAt,
    platform: r.platform,
    ...(r.userId === undefined ? {} : { userId: r.userId }),
    seed: r.seed,
    width: r.width,
    height: r.height,
    ...(r.error ? { error: r.error } : {}),
  };
}

const FINAL_LUA = `local function final(s) return s == 'done' or s == 'failed' or s == 'expired' or s == 'cancelled' end`;

// What a later write does not say (the requester, learned where the job was queued) is kept.
const MERGE_LUA = `
local function merged(new, prev)
  if not prev then return new end
  local entry = cjson.decode(new)
  for k, v in pairs(prev) do if entry[k] == nil then entry[k] = v end end
  return cjson.encode(entry)
end`;

// A final state is never overwritten by a late non-final one (a retried "generating").
const REMEMBER_LUA = `
${FINAL_LUA}
${MERGE_LUA}
local old = redis.call('GET', KEYS[1])
local prev
if old then
  local ok, p = pcall(cjson.decode, old)
  if ok then prev = p end
  if prev and ARGV[3] == '0' and final(prev.state) then return 0 end
end
redis.call('SET', KEYS[1], merged(ARGV[1], prev), 'PX', ARGV[2])
return 1
`;

// A transition: nothing overwrites a final state; answers with what was there before.
const TRANSITION_LUA = `
${FINAL_LUA}
${MERGE_LUA}
local old = redis.call('GET', KEYS[1])
local prev
if old then
  local ok, p = pcall(cjson.decode, old)
  if ok then prev = p end
  if prev and final(prev.state) then return {0, old} end
end
redis.call('SET', KEYS[1], merged(ARGV[1], prev), 'PX', ARGV[2])
return {1, old or ''}
`;

/** The ledger in Redis: one key per job, expiring after `ttlMs`. */
export class RedisJobLedger implements JobLedger {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #logger: Logger;

  constructor(opts: { redisUrl: string; prefix: string; ttlMs: number; logger: Logger }) {
    this.#redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5000 });
    this.#redis.on('error', (err) => opts.logger.warn({ err }, 'job ledger redis error'));
    this.#prefix = `${opts.prefix}job:`;
    this.#ttlMs = opts.ttlMs;
    this.#logger = opts.logger;
  }

  remember(entry: LedgerEntry): void {
    this.#redis
      .eval(
        REMEMBER_LUA,
        1,
        this.#prefix + entry.jobId,
        JSON.stringify(entry),
        String(this.#ttlMs),
        isTerminal(entry.state) ? '1' : '0',
      )
      .catch((err) => this.#logger.warn({ err, jobId: entry.jobId }, 'could not record a job'));
  }

  async transition(
    entry: LedgerEntry,
  ): Promise<{ applied: boolean; previous: LedgerEntry | undefined }> {
    const [applied, old] = (await this.#redis.eval(
      TRANSITION_LUA,
      1,
      this.#prefix + entry.jobId,
      JSON.stringify(entry),
      String(this.#ttlMs),
    )) as [number, string];
    return { applied: applied === 1, previous: parseEntry(old) };
  }

  async recall(jobId: string): Promise<LedgerEntry | undefined> {
    try {
      return parseEntry(await this.#redis.get(this.#prefix + jobId));
    } catch (err) {
      this.#logger.warn({ err, jobId }, 'could not look a job up');
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#redis.status === 'end') return;
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}

/** The fields of an entry that say something (a later write keeps what it leaves out). */
function definedOnly(entry: LedgerEntry): Partial<LedgerEntry> {
  return Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== undefined));
}

/** The ledger in a SQLite file (one relay, no Redis): rows expire after `ttlMs`. */
export class SqliteJobLedger implements JobLedger {
  readonly #db: DatabaseSync;
  readonly #upsert: StatementSync;
  readonly #select: StatementSync;
  readonly #prune: StatementSync;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  #writes = 0;

  constructor(opts: { file: string; ttlMs: number; logger: Logger; now?: () => number }) {
    mkdirSync(dirname(opts.file), { recursive: true });
    this.#db = new DatabaseSync(opts.file);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS jobs (
        job_id TEXT PRIMARY KEY,
        final INTEGER NOT NULL,
        entry TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at);
    `);
    this.#upsert = this.#db.prepare(`
      INSERT INTO jobs (job_id, final, entry, expires_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (job_id) DO UPDATE SET final = excluded.final, entry = excluded.entry,
        expires_at = excluded.expires_at
      WHERE jobs.final = 0 OR excluded.final = 1
    `);
    this.#select = this.#db.prepare('SELECT entry FROM jobs WHERE job_id = ? AND expires_at > ?');
    this.#prune = this.#db.prepare('DELETE FROM jobs WHERE expires_at <= ?');
    this.#ttlMs = opts.ttlMs;
    this.#logger = opts.logger;
    this.#now = opts.now ?? Date.now;
  }

  remember(entry: LedgerEntry): void {
    try {
      const now = this.#now();
      const previous = this.#recallNow(entry.jobId);
      this.#upsert.run(
        entry.jobId,
        isTerminal(entry.state) ? 1 : 0,
        JSON.stringify(previous ? { ...previous, ...definedOnly(entry) } : entry),
        now + this.#ttlMs,
      );
      if (++this.#writes % 1000 === 0) this.#prune.run(now);
    } catch (err) {
      this.#logger.warn({ err, jobId: entry.jobId }, 'could not record a job');
    }
  }

  async transition(
    entry: LedgerEntry,
  ): Promise<{ applied: boolean; previous: LedgerEntry | undefined }> {
    // One process, synchronous statements: nothing runs between the read and the write.
    const previous = this.#recallNow(entry.jobId);
    if (previous && isTerminal(previous.state)) return { applied: false, previous };
    this.remember(entry);
    return { applied: true, previous };
  }

  async recall(jobId: string): Promise<LedgerEntry | undefined> {
    return this.#recallNow(jobId);
  }

  #recallNow(jobId: string): LedgerEntry | undefined {
    try {
      const row = this.#select.get(jobId, this.#now()) as { entry: string } | undefined;
      return parseEntry(row?.entry);
    } catch (err) {
      this.#logger.warn({ err, jobId }, 'could not look a job up');
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
