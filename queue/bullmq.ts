/**
 * BullMQ adapter: the one file that knows `bullmq`. Jobs live in Redis, so a self-hoster with
 * only Redis can run the relay on one machine and workers on another, without AWS. Job data is
 * the same contract as on SQS: prompts and parameters, never images.
 */
import {
  type Job as BullJob,
  type JobsOptions as BullJobOptions,
  Queue,
  UnrecoverableError,
  WaitingError,
  Worker,
} from 'bullmq';
import type { Logger } from 'pino';
import { ImagineError, isRetryable } from '../contracts/errors.ts';
import { describeIssues, type Job, JobSchema } from '../contracts/job.ts';
import type { JobConsumer, JobHandler, JobQueue } from './queue.ts';
import { withTimeout } from './with-timeout.ts';

/** How to reach a BullMQ queue. */
export interface BullOptions {
  redisUrl: string;
  queueName: string;
  /** Key prefix of the queue in Redis (BullMQ's `prefix`). */
  prefix: string;
}

/** Finished jobs kept for inspection; older ones are removed so Redis does not grow forever. */
const KEEP_COMPLETED = { age: 3600, count: 1000 };
/** Failed jobs (including malformed ones, the analogue of a dead-letter queue) kept longer. */
const KEEP_FAILED = { age: 7 * 86_400, count: 5000 };
/**
 * How fast a job whose worker died (`kill -9`, a lost machine) is picked up again: its lock
 * lapses after LOCK_MS unless renewed (BullMQ renews at half of it while the job runs), and
 * every worker looks for lapsed locks each STALLED_CHECK_MS, so a lost job is back on the
 * waiting list within LOCK_MS + STALLED_CHECK_MS (≤ 15 s; BullMQ's defaults, 30 s + 30 s, made
 * it ~59 s). A job may stall twice before BullMQ fails it.
 */
export const BULL_LOCKS = { lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 2 };
/** The BullMQ job name every imagine job carries. */
const JOB_NAME = 'imagine';

/** Options of {@link BullJobQueue}. */
export interface BullQueueOptions extends BullOptions {
  /** Attempts a job gets before it fails for good. */
  attempts: number;
  /** Delay before the first retry; doubles on each further retry. */
  backoffMs: number;
}

/** Most jobs one `addBulk` carries (one pipelined write to Redis). */
const MAX_BULK = 50;

/** A send waiting for its bulk add. */
interface PendingAdd {
  job: Job;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const notAccepted = (cause: unknown) =>
  new ImagineError('QUEUE_UNAVAILABLE', 'the job queue did not accept the job', { cause });

/**
 * Sends jobs to a BullMQ queue. The imagine job id is the BullMQ job id: a resend is a no-op.
 * Sends made in one event-loop turn (concurrent enqueues) share one `addBulk`: one pipelined
 * write to Redis instead of one round trip each; a lone job is never held back. While a bulk is
 * on its way, further sends wait for its answer and then go together as the next bulk (they
 * would be answered after it anyway: one connection, answered in order), so under load each
 * bulk carries more jobs and the relay builds fewer pipelines (BullMQ's costs ~20 µs of CPU
 * each, whatever it carries: it copies every script BullMQ defines onto itself). A bulk of one
 * is a plain `add`, with no pipeline. Each caller gets its own outcome: when an add fails, each
 * job is looked up, and only those not in the queue fail (their submitters give back what they
 * took).
 */
export class BullJobQueue implements JobQueue {
  private readonly queue: Queue;
  private readonly jobOpts: BullJobOptions;
  private pending: PendingAdd[] = [];
  private flushTimer: NodeJS.Immediate | undefined;
  /** Bulk adds on their way (a close waits for them). */
  private readonly adding = new Set<Promise<void>>();

  constructor(opts: BullQueueOptions) {
    this.queue = new Queue(opts.queueName, {
      // A producer should fail fast when Redis is down instead of queueing commands forever.
      connection: { url: opts.redisUrl, enableOfflineQueue: false },
      prefix: opts.prefix,
    });
    this.queue.on('error', () => {
      // Connection errors surface on the calls below as QUEUE_UNAVAILABLE.
    });
    this.jobOpts = {
      attempts: opts.attempts,
      backoff: { type: 'exponential', delay: opts.backoffMs },
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    };
  }

  send(job: Job): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ job, resolve, reject });
      if (this.pending.length >= MAX_BULK) this.flush();
      // With a bulk on its way, this one goes when that one answers (see the class comment).
      else if (this.adding.size === 0) this.flushTimer ??= setImmediate(() => this.flush());
    });
  }

  /** Add what is pending: one job alone, several in one `addBulk`. */
  private flush(): void {
    if (this.flushTimer !== undefined) clearImmediate(this.flushTimer);
    this.flushTimer = undefined;
    const bulk = this.pending;
    this.pending = [];
    if (bulk.length === 0) return;
    const adding = this.add(bulk);
    this.adding.add(adding);
    void adding.finally(() => {
      this.adding.delete(adding);
      // What was sent meanwhile goes now, as one bulk.
      if (this.adding.size === 0) this.flush();
    });
  }

  private async add(bulk: PendingAdd[]): Promise<void> {
    const opts = (job: Job) => ({ ...this.jobOpts, jobId: job.jobId });
    try {
      if (bulk.length === 1) {
        const { job } = bulk[0]!;
        await this.queue.add(JOB_NAME, job, opts(job));
      } else
        await this.queue.addBulk(
          bulk.map(({ job }) => ({ name: JOB_NAME, data: job, opts: opts(job) })),
        );
      for (const add of bulk) add.resolve();
    } catch (err) {
      // A bulk is a pipeline, not a transaction: some of it may be in the queue. A job found
      // there was accepted; one not found (or not to be looked up) was not.
      await Promise.all(
        bulk.map(async (add) => {
          const found = await this.queue.getJob(add.job.jobId).catch(() => undefined);
          if (found) add.resolve();
          else add.reject(notAccepted(err));
        }),
      );
    }
  }

  async depth(): Promise<number | undefined> {
    try {
      return await this.queue.getWaitingCount();
    } catch {
      return undefined;
    }
  }

  /** Add what is pending, then close the Redis connection. */
  async close(): Promise<void> {
    this.flush();
    await Promise.all(this.adding);
    await this.queue.close();
  }
}

/** Options of {@link BullJobConsumer}. */
export interface BullConsumerOptions extends BullOptions {
  concurrency: number;
  logger: Logger;
  /** On stop, how long jobs in flight may take to finish before they are handed back. */
  drainMs?: number;
}

/**
 * Consumes jobs with a BullMQ `Worker` running `concurrency` jobs at once. A malformed job is
 * failed at once without retries (it stays in the failed set for inspection, the analogue of the
 * SQS dead-letter queue) and never crashes the worker.
 */
export class BullJobConsumer implements JobConsumer {
  private worker: Worker | undefined;
  private readonly abort = new AbortController();
  private readonly opts: BullConsumerOptions;

  constructor(opts: BullConsumerOptions) {
    this.opts = opts;
  }

  start(handler: JobHandler): void {
    const { opts } = this;
    const worker = new Worker(opts.queueName, (job, token) => this.handle(job, token, handler), {
      connection: { url: opts.redisUrl },
      prefix: opts.prefix,
      concurrency: opts.concurrency,
      ...BULL_LOCKS,
      // Also bounds jobs added by other producers without removal options.
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    });
    worker.on('error', (err) => {
      if (!this.abort.signal.aborted) opts.logger.warn({ err }, 'bullmq worker error');
    });
    worker.on('failed', (job, err) => {
      if (err instanceof UnrecoverableError) return;
      opts.logger.warn({ err, jobId: job?.id }, 'job attempt failed');
    });
    this.worker = worker;
  }

  private async handle(bullJob: BullJob, token: string | undefined, handler: JobHandler) {
    const job = this.parse(bullJob);
    // Unrecoverable: straight to the failed set, no retries, the worker carries on.
    if (!job) throw new UnrecoverableError('malformed job');
    try {
      await handler(job, { signal: this.abort.signal, attempt: bullJob.attemptsMade + 1 });
    } catch (err) {
      if (this.abort.signal.aborted) {
        // Cut short by shutdown: back to the queue for another worker, not counted as a failure.
        await bullJob.moveToWait(token);
        throw new WaitingError();
      }
      if (isRetryable(err)) throw err;
      // Non-retryable failures were reported by the handler; the job is done with.
      this.opts.logger.error({ err, jobId: job.jobId }, 'job failed for good');
    }
  }

  private parse(bullJob: BullJob): Job | undefined {
    const result = JobSchema.safeParse(bullJob.data);
    if (result.success) return result.data;
    this.opts.logger.error(
      { bullJobId: bullJob.id, problems: describeIssues(result.error) },
      'queue job is not a valid job',
    );
    return undefined;
  }

  /**
   * Stop taking jobs at once; let jobs in flight finish for up to `drainMs`, then abort them,
   * which moves them back to the waiting list for another worker. No job is lost to a restart.
   */
  async stop(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    const closed = worker.close();
    if ((await withTimeout(closed, this.opts.drainMs ?? 25_000)) === 'timeout') {
      this.opts.logger.warn('jobs still running at shutdown: handing them back');
      this.abort.abort();
      // A job that ignores the abort keeps its lock until it expires; BullMQ's stalled-job check
      // then moves it back to the waiting list.
      await withTimeout(closed, 10_000);
    }
    this.abort.abort();
  }
}
