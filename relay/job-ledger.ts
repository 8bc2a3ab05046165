/**
 * What a relay remembers of each job beyond its own memory: the job's id, state and size, never
 * its prompt or image. A relay restarted while a job is queued (or one started later, with
 * Redis) learns the job from here instead of declaring it unknown, and a push for a job that
 * already ended (a replay, a duplicate) is recognised as one. Redis (with a TTL) when REDIS_URL
 * is set, shared by every relay (`redis-job-ledger.ts`, loaded only then); otherwise a SQLite
 * file under DATA_DIR.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
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

/** A stored entry, or undefined when the text is not one. */
export function parseEntry(text: string | null | undefined): LedgerEntry | undefined {
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

/** The fields of an entry that say something (a later write keeps what it leaves out). */
function definedOnly(entry: LedgerEntry): Partial<LedgerEntry> {
  return Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== undefined));
}

/**
 * `next` written over `prev` as the store applies it: what `next` leaves out is kept, and a
 * non-final state never replaces a final one.
 */
function mergeEntry(prev: LedgerEntry, next: LedgerEntry): LedgerEntry {
  if (isTerminal(prev.state) && !isTerminal(next.state)) return prev;
  return { ...prev, ...definedOnly(next) } as LedgerEntry;
}

/**
 * How long the SQLite ledger gathers writes before it commits them in one transaction: a commit
 * costs ~40 µs of CPU for one row and ~18 µs a row for sixteen, and at a few hundred enqueues a
 * second a turn holds one or two. Reads see pending writes from memory meanwhile; a crash loses
 * at most this long of them (the jobs themselves are on the queue and still run).
 */
const SQLITE_COMMIT_LINGER_MS = 20;

/**
 * The ledger in a SQLite file (one relay, no Redis): rows expire after `ttlMs`. Writes made
 * within {@link SQLITE_COMMIT_LINGER_MS} of each other are committed together, in one
 * transaction (one WAL append instead of one per job); until then reads see them from memory, so
 * a recall or a transition never misses a write. A batch the database refuses is written again
 * entry by entry, so one bad entry costs only itself. Closing writes what is still pending.
 */
export class SqliteJobLedger implements JobLedger {
  readonly #db: DatabaseSync;
  readonly #upsert: StatementSync;
  readonly #select: StatementSync;
  readonly #prune: StatementSync;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  /** Writes not yet committed, merged per job. */
  readonly #pending = new Map<string, LedgerEntry>();
  #flushing: NodeJS.Timeout | undefined;
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
    // The merge happens in the statement (no read first): what the new entry leaves out is kept
    // from a live row; an expired or unreadable row is replaced. A final row stays final.
    this.#upsert = this.#db.prepare(`
      INSERT INTO jobs (job_id, final, entry, expires_at) VALUES (?1, ?2, ?3, ?4)
      ON CONFLICT (job_id) DO UPDATE SET final = excluded.final,
        entry = CASE WHEN jobs.expires_at > ?5 AND json_valid(jobs.entry)
          THEN json_patch(jobs.entry, excluded.entry) ELSE excluded.entry END,
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
    const pending = this.#pending.get(entry.jobId);
    this.#pending.set(entry.jobId, pending ? mergeEntry(pending, entry) : entry);
    this.#flushing ??= setTimeout(() => this.#flush(), SQLITE_COMMIT_LINGER_MS);
  }

  /** Commit the pending writes in one transaction (entry by entry if the batch is refused). */
  #flush(): void {
    if (this.#flushing) clearTimeout(this.#flushing);
    this.#flushing = undefined;
    if (this.#pending.size === 0 || !this.#db.isOpen) return;
    const batch = [...this.#pending.values()];
    this.#pending.clear();
    const now = this.#now();
    try {
      this.#db.exec('BEGIN');
      for (const entry of batch) this.#write(entry, now);
      this.#db.exec('COMMIT');
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      this.#logger.warn(
        { err, jobs: batch.length },
        'could not record a batch of jobs; one by one',
      );
      for (const entry of batch) {
        try {
          this.#write(entry, now);
        } catch (err) {
          this.#logger.warn({ err, jobId: entry.jobId }, 'could not record a job');
        }
      }
    }
    const before = this.#writes;
    this.#writes += batch.length;
    if (Math.floor(before / 1000) !== Math.floor(this.#writes / 1000)) {
      try {
        this.#prune.run(now);
      } catch (err) {
        this.#logger.warn({ err }, 'could not prune the job ledger');
      }
    }
  }

  #write(entry: LedgerEntry, now: number): void {
    this.#upsert.run(
      entry.jobId,
      isTerminal(entry.state) ? 1 : 0,
      JSON.stringify(entry),
      now + this.#ttlMs,
      now,
    );
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

  /** The stored entry with the pending writes over it. */
  #recallNow(jobId: string): LedgerEntry | undefined {
    let stored: LedgerEntry | undefined;
    try {
      const row = this.#select.get(jobId, this.#now()) as { entry: string } | undefined;
      stored = parseEntry(row?.entry);
    } catch (err) {
      this.#logger.warn({ err, jobId }, 'could not look a job up');
    }
    const pending = this.#pending.get(jobId);
    if (!pending) return stored;
    return stored ? mergeEntry(stored, pending) : pending;
  }

  async close(): Promise<void> {
    if (!this.#db.isOpen) return;
    this.#flush();
    this.#db.close();
  }
}
