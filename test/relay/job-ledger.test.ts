/**
 * The job ledger's transition (issue 11): a start and a cancel decided atomically, a final state
 * never overwritten, and what a later write leaves out (the requester) kept, in Redis and SQLite.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pino from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { type JobLedger, SqliteJobLedger } from '../../relay/job-ledger.ts';
import { RedisJobLedger } from '../../relay/redis-job-ledger.ts';
import { testJobId } from '../helpers/push.ts';

const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'imagine-ledger-'));
const ledgers: Array<[string, JobLedger]> = [
  [
    'Redis',
    new RedisJobLedger({
      redisUrl: inject('redisUrl'),
      prefix: `test-ledger-${randomBytes(4).toString('hex')}:`,
      ttlMs: 60_000,
      logger,
    }),
  ],
  ['SQLite', new SqliteJobLedger({ file: join(dir, 'jobs.sqlite'), ttlMs: 60_000, logger })],
];
afterAll(async () => {
  for (const [, ledger] of ledgers) await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.each(ledgers)('job ledger transitions (%s)', (_name, ledger) => {
  const settle = () => new Promise((r) => setTimeout(r, 50));

  it('a cancel of a queued job wins over a later start, and says it was queued', async () => {
    const jobId = testJobId();
    ledger.remember({ jobId, state: 'queued', createdAt: 1, platform: 'discord', userId: 'u1' });
    await settle();
    const cancelled = await ledger.transition({ jobId, state: 'cancelled', createdAt: 1 });
    expect(cancelled.applied).toBe(true);
    expect(cancelled.previous?.state).toBe('queued');
    const start = await ledger.transition({ jobId, state: 'generating', createdAt: 1 });
    expect(start).toMatchObject({ applied: false, previous: { state: 'cancelled' } });
    const done = await ledger.transition({ jobId, state: 'done', createdAt: 1 });
    expect(done.applied).toBe(false);
    // The requester, known where it was queued, is kept through writes that leave it out.
    expect(await ledger.recall(jobId)).toMatchObject({
      state: 'cancelled',
      platform: 'discord',
      userId: 'u1',
    });
  });

  it('a cancel after the start sees it running; a late remember never undoes a final state', async () => {
    const jobId = testJobId();
    expect((await ledger.transition({ jobId, state: 'generating', createdAt: 1 })).applied).toBe(
      true,
    );
    const cancelled = await ledger.transition({ jobId, state: 'cancelled', createdAt: 1 });
    expect(cancelled).toMatchObject({ applied: true, previous: { state: 'generating' } });
    ledger.remember({ jobId, state: 'generating', createdAt: 1 });
    await settle();
    expect((await ledger.recall(jobId))?.state).toBe('cancelled');
  });

  it('writes of one turn (sent together) are each recorded, and a transition after them sees them', async () => {
    const ids = Array.from({ length: 12 }, () => testJobId());
    for (const jobId of ids) ledger.remember({ jobId, state: 'queued', createdAt: 1, userId: 'u' });
    // Same job twice in the turn: the later write wins, what it leaves out is kept.
    ledger.remember({ jobId: ids[0]!, state: 'generating', createdAt: 1 });
    const cancel = await ledger.transition({ jobId: ids[1]!, state: 'cancelled', createdAt: 1 });
    expect(cancel).toMatchObject({ applied: true, previous: { state: 'queued', userId: 'u' } });
    await settle();
    expect(await ledger.recall(ids[0]!)).toMatchObject({ state: 'generating', userId: 'u' });
    expect((await ledger.recall(ids[1]!))?.state).toBe('cancelled');
    for (const jobId of ids.slice(2)) expect((await ledger.recall(jobId))?.state).toBe('queued');
  });

  it('of two racing transitions on one job, a cancel and a finish, exactly one is final', async () => {
    const jobId = testJobId();
    await ledger.transition({ jobId, state: 'generating', createdAt: 1 });
    const [a, b] = await Promise.all([
      ledger.transition({ jobId, state: 'cancelled', createdAt: 1 }),
      ledger.transition({ jobId, state: 'done', createdAt: 1 }),
    ]);
    expect([a.applied, b.applied].filter(Boolean)).toHaveLength(1);
  });
});

describe('the SQLite ledger commits each turn’s writes together', () => {
  const turn = () => new Promise((r) => setTimeout(r, 20));

  it('reads see a write before it is committed, and a reopened ledger finds every one', async () => {
    const file = join(dir, `turn-${randomBytes(4).toString('hex')}.sqlite`);
    const first = new SqliteJobLedger({ file, ttlMs: 60_000, logger });
    const ids = [testJobId(), testJobId(), testJobId()];
    for (const jobId of ids) first.remember({ jobId, state: 'queued', createdAt: 1, userId: 'u' });
    // Not yet committed (the same turn): recall and transition see it all the same.
    expect((await first.recall(ids[0]!))?.state).toBe('queued');
    first.remember({ jobId: ids[1]!, state: 'done', createdAt: 1 });
    expect(await first.transition({ jobId: ids[1]!, state: 'generating', createdAt: 1 })).toEqual(
      expect.objectContaining({
        applied: false,
        previous: expect.objectContaining({ state: 'done', userId: 'u' }),
      }),
    );
    await turn();
    // Another connection to the file (a restarted relay) reads what was committed.
    const second = new SqliteJobLedger({ file, ttlMs: 60_000, logger });
    expect((await second.recall(ids[0]!))?.state).toBe('queued');
    expect(await second.recall(ids[1]!)).toMatchObject({ state: 'done', userId: 'u' });
    // A write still pending when the ledger closes is committed by the close.
    first.remember({ jobId: ids[2]!, state: 'failed', createdAt: 1 });
    await first.close();
    expect(await second.recall(ids[2]!)).toMatchObject({ state: 'failed', userId: 'u' });
    await second.close();
  });

  it('a batch the database refuses is written entry by entry: one bad entry loses only itself', async () => {
    const file = join(dir, `refused-${randomBytes(4).toString('hex')}.sqlite`);
    const lines: Array<{ msg: string; jobId?: string; jobs?: number }> = [];
    const capture = pino(
      { level: 'warn' },
      { write: (line: string) => void lines.push(JSON.parse(line)) },
    );
    const ledger = new SqliteJobLedger({ file, ttlMs: 60_000, logger: capture });
    const [good1, bad, good2] = [testJobId(), testJobId(), testJobId()];
    // The database refuses one row (as a full disk or a corrupt page would refuse a write).
    const db = new DatabaseSync(file);
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON jobs WHEN NEW.job_id = '${bad}'
      BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    db.close();
    for (const jobId of [good1!, bad!, good2!])
      ledger.remember({ jobId, state: 'queued', createdAt: 1 });
    await turn();
    const reopened = new SqliteJobLedger({ file, ttlMs: 60_000, logger });
    expect((await reopened.recall(good1!))?.state).toBe('queued');
    expect((await reopened.recall(good2!))?.state).toBe('queued');
    expect(await reopened.recall(bad!)).toBeUndefined();
    expect(lines.map((l) => [l.msg, l.jobs ?? l.jobId])).toEqual([
      ['could not record a batch of jobs; one by one', 3],
      ['could not record a job', bad],
    ]);
    await reopened.close();
    await ledger.close();
  });
});
