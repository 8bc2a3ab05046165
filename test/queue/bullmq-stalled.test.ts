/**
 * A BullMQ worker killed with SIGKILL mid-job loses nothing: its lock lapses and another worker
 * runs the job (BULL_LOCKS: within ~15 s instead of BullMQ's ~59 s defaults).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { type Job, newJobId } from '../../contracts/job.ts';
import { BullJobConsumer, BullJobQueue } from '../../queue/bullmq.ts';

const child = fileURLToPath(new URL('../fixtures/bull-hanging-worker.ts', import.meta.url));

function aJob(): Job {
  const now = Date.now();
  return {
    v: 1,
    jobId: newJobId(),
    prompt: 'a worker that dies',
    params: { width: 64, height: 64, seed: 1, steps: 1 },
    origin: { platform: 'web', userId: 'u', scopeId: 'web' },
    createdAt: now,
    expiresAt: now + 600_000,
  } as Job;
}

describe('BullMQ worker killed mid-job', () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('another worker picks the job up again', async () => {
    const id = randomBytes(6).toString('hex');
    const where = {
      redisUrl: inject('redisUrl'),
      queueName: `stall-${id}`,
      prefix: `test-${id}:bull`,
    };
    const queue = new BullJobQueue({ ...where, attempts: 3, backoffMs: 100 });
    cleanups.push(() => queue.close());
    const job = aJob();
    await queue.send(job);

    const doomed: ChildProcess = spawn(
      process.execPath,
      [child, where.redisUrl, where.queueName, where.prefix],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => doomed.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      doomed.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes(`started ${job.jobId}`)) resolve();
      });
      doomed.once('exit', (code) => reject(new Error(`worker exited early (${code})`)));
    });
    doomed.removeAllListeners('exit');
    doomed.kill('SIGKILL');

    const rescuer = new BullJobConsumer({
      ...where,
      concurrency: 1,
      logger: pino({ level: 'silent' }),
    });
    cleanups.push(() => rescuer.stop());
    const handled = await new Promise<{ jobId: string; attempt: number }>((resolve) => {
      rescuer.start(async (j, ctx) => resolve({ jobId: j.jobId, attempt: ctx.attempt }));
    });
    expect(handled.jobId).toBe(job.jobId);
  }, 28_000);
});
