/**
 * The job ledger's transition (issue 11): a start and a cancel decided atomically, a final state
 * never overwritten, and what a later write leaves out (the requester) kept, in Redis and SQLite.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { type JobLedger, RedisJobLedger, SqliteJobLedger } from '../../relay/job-ledger.ts';
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
