/**
 * The job ledger in Redis, shared by every relay (see `job-ledger.ts`). A module of its own so
 * that a relay without REDIS_URL never loads the Redis client.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { isTerminal } from '../contracts/push.ts';
import { type JobLedger, type LedgerEntry, parseEntry } from './job-ledger.ts';

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

/** The scripts, sent by their SHA (EVALSHA) rather than their text. */
interface LedgerCommands {
  imagineLedgerRemember(
    key: string,
    entry: string,
    ttlMs: string,
    final: '0' | '1',
  ): Promise<number>;
  imagineLedgerTransition(key: string, entry: string, ttlMs: string): Promise<[number, string]>;
}

/**
 * The ledger in Redis: one key per job, expiring after `ttlMs`. Writes made in one event-loop
 * turn go out together, as one pipelined write to Redis; a transition or a recall sends what
 * is pending first, so on the one connection nothing overtakes an earlier write.
 */
export class RedisJobLedger implements JobLedger {
  readonly #redis: Redis;
  readonly #commands: LedgerCommands;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  #pending: LedgerEntry[] = [];
  #flushing: NodeJS.Immediate | undefined;

  constructor(opts: { redisUrl: string; prefix: string; ttlMs: number; logger: Logger }) {
    this.#redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 2, connectTimeout: 5000 });
    this.#redis.on('error', (err) => opts.logger.warn({ err }, 'job ledger redis error'));
    this.#redis.defineCommand('imagineLedgerRemember', { numberOfKeys: 1, lua: REMEMBER_LUA });
    this.#redis.defineCommand('imagineLedgerTransition', {
      numberOfKeys: 1,
      lua: TRANSITION_LUA,
    });
    this.#commands = this.#redis as unknown as LedgerCommands;
    this.#prefix = `${opts.prefix}job:`;
    this.#ttlMs = opts.ttlMs;
    this.#logger = opts.logger;
  }

  remember(entry: LedgerEntry): void {
    this.#pending.push(entry);
    this.#flushing ??= setImmediate(() => this.#flush());
  }

  /** Send this turn's writes in one pipeline; each failure is logged with its job. */
  #flush(): void {
    if (this.#flushing) clearImmediate(this.#flushing);
    this.#flushing = undefined;
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    const ttl = String(this.#ttlMs);
    const remember = (to: LedgerCommands, entry: LedgerEntry) =>
      to.imagineLedgerRemember(
        this.#prefix + entry.jobId,
        JSON.stringify(entry),
        ttl,
        isTerminal(entry.state) ? '1' : '0',
      );
    const log = (entry: LedgerEntry) => (err: unknown) =>
      this.#logger.warn({ err, jobId: entry.jobId }, 'could not record a job');
    if (batch.length === 1) {
      const [entry] = batch as [LedgerEntry];
      remember(this.#commands, entry).catch(log(entry));
      return;
    }
    const pipeline = this.#redis.pipeline();
    // On a pipeline the commands are queued (they answer the pipeline, not a promise).
    for (const entry of batch) void remember(pipeline as unknown as LedgerCommands, entry);
    pipeline.exec().then(
      (results) =>
        results?.forEach(([err], i) => {
          if (err) log(batch[i]!)(err);
        }),
      (err) => {
        for (const entry of batch) log(entry)(err);
      },
    );
  }

  async transition(
    entry: LedgerEntry,
  ): Promise<{ applied: boolean; previous: LedgerEntry | undefined }> {
    this.#flush();
    const [applied, old] = await this.#commands.imagineLedgerTransition(
      this.#prefix + entry.jobId,
      JSON.stringify(entry),
      String(this.#ttlMs),
    );
    return { applied: applied === 1, previous: parseEntry(old) };
  }

  async recall(jobId: string): Promise<LedgerEntry | undefined> {
    this.#flush();
    try {
      return parseEntry(await this.#redis.get(this.#prefix + jobId));
    } catch (err) {
      this.#logger.warn({ err, jobId }, 'could not look a job up');
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#redis.status === 'end') return;
    this.#flush();
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
