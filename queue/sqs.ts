/**
 * SQS adapter: the one file that knows `@aws-sdk/client-sqs` and `sqs-consumer`.
 * The same code path runs against AWS and against the embedded emulator.
 */

import { once } from 'node:events';
import {
  GetQueueAttributesCommand,
  type Message,
  SendMessageBatchCommand,
  type SendMessageBatchCommandOutput,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { Logger } from 'pino';
import { Consumer } from 'sqs-consumer';
import { ImagineError, isRetryable } from '../contracts/errors.ts';
import { describeIssues, type Job, JobSchema } from '../contracts/job.ts';
import type { JobConsumer, JobHandler, JobQueue } from './queue.ts';
import { withTimeout } from './with-timeout.ts';

/** How to reach a queue. */
export interface SqsOptions {
  queueUrl: string;
  region: string;
  endpoint?: string | undefined;
  /** Static credentials (the emulator); AWS uses the default provider chain when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** Build an SQS client from options. */
export function createSqsClient(opts: Omit<SqsOptions, 'queueUrl'>): SQSClient {
  return new SQSClient({
    region: opts.region,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
  });
}

/**
 * JSON with every non-ASCII code unit escaped: SQS refuses some characters (and emulators refuse
 * more, e.g. emoji outside the BMP), while `\uXXXX` escapes always pass and parse back exactly.
 */
export function toAsciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** SendMessageBatch takes at most 10 entries. */
const MAX_BATCH_ENTRIES = 10;
/** A batch stays under 256 KiB, the request limit of older queues and emulators (AWS: 1 MiB). */
const MAX_BATCH_BYTES = 256 * 1024;

/** Options of {@link SqsJobQueue}. */
export interface SqsQueueOptions {
  /**
   * How long a send waits for others to share its `SendMessageBatch` call. 0 (the default)
   * coalesces the sends of one event-loop turn only, so a lone job is never held back.
   */
  lingerMs?: number;
}

/** A send waiting for its batch. */
interface PendingSend {
  entry: SendMessageBatchRequestEntry;
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const notAccepted = (cause: unknown) =>
  new ImagineError('QUEUE_UNAVAILABLE', 'the job queue did not accept the job', { cause });

/**
 * Sends jobs to SQS. Sends made together (concurrent enqueues) share one `SendMessageBatch`
 * call of up to 10 jobs: a tenth of the requests (AWS bills per request) and of the SDK's CPU
 * per job. Each caller gets its own outcome: an entry SQS refuses fails only its own send.
 */
export class SqsJobQueue implements JobQueue {
  private readonly client: SQSClient;
  private readonly queueUrl: string;
  private readonly lingerMs: number;
  private pending: PendingSend[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Immediate | NodeJS.Timeout | undefined;

  constructor(client: SQSClient, queueUrl: string, opts: SqsQueueOptions = {}) {
    this.client = client;
    this.queueUrl = queueUrl;
    this.lingerMs = opts.lingerMs ?? 0;
  }

  send(job: Job): Promise<void> {
    const body = toAsciiJson(job);
    // ASCII only, so characters are bytes; SQS counts attribute names, types and values too.
    const bytes = body.length + 'jobId'.length + 'String'.length + job.jobId.length;
    return new Promise<void>((resolve, reject) => {
      if (this.pendingBytes + bytes > MAX_BATCH_BYTES) this.flush();
      this.pending.push({
        entry: {
          Id: String(this.pending.length),
          MessageBody: body,
          MessageAttributes: { jobId: { DataType: 'String', StringValue: job.jobId } },
        },
        bytes,
        resolve,
        reject,
      });
      this.pendingBytes += bytes;
      if (this.pending.length >= MAX_BATCH_ENTRIES) this.flush();
      else
        this.flushTimer ??=
          this.lingerMs > 0
            ? setTimeout(() => this.flush(), this.lingerMs)
            : setImmediate(() => this.flush());
    });
  }

  /** Send what is pending: one job alone, several as one batch. */
  private flush(): void {
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer as NodeJS.Timeout);
      clearImmediate(this.flushTimer as NodeJS.Immediate);
      this.flushTimer = undefined;
    }
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (batch.length === 1) void this.sendOne(batch[0]!);
    else if (batch.length > 1) void this.sendBatch(batch);
  }

  private async sendOne(send: PendingSend): Promise<void> {
    const { MessageBody, MessageAttributes } = send.entry;
    try {
      await this.client.send(
        new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody, MessageAttributes }),
      );
      send.resolve();
    } catch (err) {
      send.reject(notAccepted(err));
    }
  }

  private async sendBatch(batch: PendingSend[]): Promise<void> {
    let out: SendMessageBatchCommandOutput;
    try {
      out = await this.client.send(
        new SendMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: batch.map((b) => b.entry),
        }),
      );
    } catch (err) {
      for (const send of batch) send.reject(notAccepted(err));
      return;
    }
    const ok = new Set((out.Successful ?? []).map((s) => s.Id));
    const failed = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
    for (const send of batch) {
      const id = send.entry.Id;
      const failure = failed.get(id);
      if (failure) {
        const cause = Object.assign(new Error(failure.Message ?? 'entry refused'), {
          name: failure.Code ?? 'SendMessageBatchEntryFailed',
        });
        send.reject(notAccepted(cause));
      } else if (ok.has(id)) send.resolve();
      else send.reject(notAccepted(new Error(`SendMessageBatch did not answer for entry ${id}`)));
    }
  }

  async depth(): Promise<number | undefined> {
    try {
      const out = await this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: this.queueUrl,
          AttributeNames: ['ApproximateNumberOfMessages'],
        }),
      );
      const n = Number(out.Attributes?.ApproximateNumberOfMessages);
      return Number.isFinite(n) ? n : undefined;
    } catch {
      return undefined;
    }
  }
}

/** What a queue's RedrivePolicy says: where dead letters go, and after how many receives. */
export interface RedrivePolicy {
  deadLetterUrl?: string | undefined;
  /** Receives before SQS moves a message to the dead-letter queue (AWS: 1–1000). */
  maxReceiveCount?: number | undefined;
}

/**
 * Read a queue's RedrivePolicy. On AWS the queue's own `maxReceiveCount` decides when a job
 * leaves for the dead-letter queue, whatever imagine's configuration says.
 */
export async function readRedrivePolicy(
  client: SQSClient,
  queueUrl: string,
): Promise<RedrivePolicy> {
  const out = await client.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['RedrivePolicy'] }),
  );
  const policy = out.Attributes?.RedrivePolicy;
  if (!policy) return {};
  const parsed = JSON.parse(policy) as { deadLetterTargetArn?: unknown; maxReceiveCount?: unknown };
  // AWS returns maxReceiveCount as a number, some emulators as a string.
  const count = Number(parsed.maxReceiveCount);
  const maxReceiveCount = Number.isInteger(count) && count >= 1 ? count : undefined;
  const arn = typeof parsed.deadLetterTargetArn === 'string' ? parsed.deadLetterTargetArn : '';
  if (!arn) return { maxReceiveCount };
  // arn:aws:sqs:REGION:ACCOUNT:NAME → same endpoint as the job queue, /ACCOUNT/NAME
  const [, , , , account, name] = arn.split(':');
  const base = new URL(queueUrl);
  return { deadLetterUrl: `${base.origin}/${account}/${name}`, maxReceiveCount };
}

/** Find a queue's dead-letter queue URL from its RedrivePolicy. */
export async function resolveDeadLetterUrl(
  client: SQSClient,
  queueUrl: string,
): Promise<string | undefined> {
  return (await readRedrivePolicy(client, queueUrl)).deadLetterUrl;
}

/** Options of {@link SqsJobConsumer}. */
export interface SqsConsumerOptions {
  client: SQSClient;
  queueUrl: string;
  deadLetterUrl?: string | undefined;
  concurrency: number;
  visibilityTimeoutSeconds: number;
  waitTimeSeconds: number;
  logger: Logger;
  /** Seconds before a failed, retryable job becomes visible again. */
  retryDelaySeconds?: number;
  /** On stop, how long jobs in flight may take to finish before they are handed back. */
  drainMs?: number;
}

/**
 * Consumes jobs with `sqs-consumer`: one long-polling consumer per concurrency slot, so each
 * slot picks up the next job the moment it is free. Visibility is extended while a job runs.
 * A malformed message is moved to the dead-letter queue at once, never retried or crashed on.
 */
export class SqsJobConsumer implements JobConsumer {
  private consumers: Consumer[] = [];
  /** Consumers running a job right now (the rest are long-polling). */
  private readonly busy = new Set<Consumer>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly abort = new AbortController();

  private readonly opts: SqsConsumerOptions;

  constructor(opts: SqsConsumerOptions) {
    this.opts = opts;
  }

  start(handler: JobHandler): void {
    const { opts } = this;
    for (let i = 0; i < opts.concurrency; i++) {
      const consumer = Consumer.create({
        queueUrl: opts.queueUrl,
        sqs: opts.client,
        batchSize: 1,
        waitTimeSeconds: opts.waitTimeSeconds,
        visibilityTimeout: opts.visibilityTimeoutSeconds,
        heartbeatInterval: Math.max(1, Math.floor(opts.visibilityTimeoutSeconds / 3)),
        terminateVisibilityTimeout: opts.retryDelaySeconds ?? 5,
        pollingWaitTimeMs: 0,
        // Lets stop() wait for a job in flight to finish and its message to be deleted.
        pollingCompleteWaitTimeMs: (opts.drainMs ?? 25_000) + 15_000,
        messageSystemAttributeNames: ['ApproximateReceiveCount'],
        handleMessage: async (message) => {
          this.busy.add(consumer);
          const work = this.handle(message, handler);
          this.inFlight.add(work);
          try {
            return await work;
          } finally {
            this.inFlight.delete(work);
            this.busy.delete(consumer);
          }
        },
      });
      consumer.on('error', (err) => {
        if (!this.abort.signal.aborted) opts.logger.warn({ err }, 'sqs consumer error');
      });
      consumer.on('processing_error', (err) => {
        opts.logger.warn({ err: err.cause ?? err }, 'job will be retried');
      });
      consumer.start();
      this.consumers.push(consumer);
    }
  }

  private async handle(message: Message, handler: JobHandler): Promise<Message> {
    const job = this.parse(message);
    if (!job) {
      await this.deadLetter(message);
      return message;
    }
    try {
      const attempt = Number(message.Attributes?.ApproximateReceiveCount ?? 1) || 1;
      await handler(job, { signal: this.abort.signal, attempt });
    } catch (err) {
      // Cut short by shutdown: hand the job back to the queue for another worker.
      if (this.abort.signal.aborted) throw err;
      if (isRetryable(err)) throw err;
      // Non-retryable failures were reported by the handler; drop the message.
      this.opts.logger.error({ err, jobId: job.jobId }, 'job failed for good');
    }
    return message;
  }

  private parse(message: Message): Job | undefined {
    let body: unknown;
    try {
      body = JSON.parse(message.Body ?? '');
    } catch {
      this.opts.logger.error({ messageId: message.MessageId }, 'queue message is not JSON');
      return undefined;
    }
    const result = JobSchema.safeParse(body);
    if (!result.success) {
      this.opts.logger.error(
        { messageId: message.MessageId, problems: describeIssues(result.error) },
        'queue message is not a valid job',
      );
      return undefined;
    }
    return result.data;
  }

  private async deadLetter(message: Message): Promise<void> {
    if (!this.opts.deadLetterUrl) {
      this.opts.logger.error(
        { messageId: message.MessageId },
        'no dead-letter queue: dropping malformed message',
      );
      return;
    }
    await this.opts.client.send(
      new SendMessageCommand({
        QueueUrl: this.opts.deadLetterUrl,
        MessageBody: message.Body ?? '',
        MessageAttributes: {
          reason: { DataType: 'String', StringValue: 'malformed job' },
          sourceMessageId: { DataType: 'String', StringValue: message.MessageId ?? 'unknown' },
        },
      }),
    );
  }

  /**
   * Stop polling at once; let jobs in flight finish (and their messages be deleted) for up to
   * `drainMs`, then abort them, which hands their messages back to the queue. No job is lost to
   * a restart.
   */
  async stop(): Promise<void> {
    const drainMs = this.opts.drainMs ?? 25_000;
    // Idle consumers are only long-polling: cut that short. Busy ones finish their job first.
    const busy = this.consumers.filter((c) => this.busy.has(c));
    const stopped = Promise.all(busy.map((c) => once(c, 'stopped')));
    for (const c of this.consumers) c.stop(this.busy.has(c) ? undefined : { abort: true });
    if ((await withTimeout(stopped, drainMs)) === 'timeout') {
      this.opts.logger.warn(
        { jobs: this.inFlight.size },
        'jobs still running at shutdown: handing them back',
      );
      this.abort.abort();
      await withTimeout(stopped, 10_000);
    }
    this.abort.abort();
    this.consumers = [];
  }
}
