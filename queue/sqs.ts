/**
 * SQS adapter: the one file that knows `@aws-sdk/client-sqs`.
 * The same code path runs against AWS and against the embedded emulator.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type SendMessageBatchCommandOutput,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { Logger } from 'pino';
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

/**
 * Requests without a signature: SigV4 is about a third of each call's CPU (hashing the body and
 * HMACs over the canonical request), for nothing when the queue is the embedded emulator, which
 * listens on loopback only and checks no signature. Same SQS JSON protocol, one header less.
 */
const UNSIGNED = {
  httpAuthSchemes: [
    {
      schemeId: 'smithy.api#noAuth',
      identityProvider: () => async () => ({}),
      signer: { sign: async <R>(request: R) => request },
    },
  ],
  httpAuthSchemeProvider: () => [{ schemeId: 'smithy.api#noAuth' }],
};

/** Build an SQS client from options. */
export function createSqsClient(
  opts: Omit<SqsOptions, 'queueUrl'> & {
    /** Send unsigned requests (the embedded emulator only: it checks no signature). */
    unsigned?: boolean;
    /**
     * Resolve each command's middleware stack once, not per call (the SDK's `cacheMiddleware`:
     * ~0.09 ms of CPU a call against the emulator, of ~0.5). A call made with options (an abort
     * signal) drops that cache, so such calls belong on a client of their own (see
     * {@link SqsConsumerOptions.receiveClient}); middleware must be added before the first call.
     */
    cacheMiddleware?: boolean;
  },
): SQSClient {
  return new SQSClient({
    region: opts.region,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.unsigned ? UNSIGNED : {}),
    ...(opts.cacheMiddleware ? { cacheMiddleware: true } : {}),
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
   * Under load, the least time between the starts of two calls that are not full (default
   * {@link CALL_SPACING_MS}). Load is a call still on its way, or a last call that carried more
   * than one job: then a send made sooner than this after the last call's start waits out the
   * rest, and the sends made meanwhile go with it. Otherwise (an idle relay, one client sending
   * one job after another) a send goes at the end of its event-loop turn. A full batch (10 jobs)
   * always goes at once.
   */
  callSpacingMs?: number;
}

/**
 * See {@link SqsQueueOptions.callSpacingMs}: under load, a job waits at most this long and
 * shares its call with the jobs of those milliseconds (each call costs the relay ~0.8 ms of CPU
 * whatever it carries, and AWS bills per call); a lone job is not held back.
 */
const CALL_SPACING_MS = 10;

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
 * Sends jobs to SQS. Sends made together share one `SendMessageBatch` call of up to 10 jobs:
 * those of one event-loop turn, and under load those of the last `callSpacingMs` (see
 * {@link SqsQueueOptions.callSpacingMs}), so that the calls per job (AWS's bill, and most of the
 * relay's CPU per SQS enqueue) fall as the load grows. Each caller gets its own outcome: an
 * entry SQS refuses fails only its own send.
 */
export class SqsJobQueue implements JobQueue {
  private readonly client: SQSClient;
  private readonly queueUrl: string;
  private readonly callSpacingMs: number;
  private pending: PendingSend[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Immediate | NodeJS.Timeout | undefined;
  /** When the last call started (`performance.now()`), or never; and how many jobs it carried. */
  private lastCallAt = Number.NEGATIVE_INFINITY;
  private lastCallJobs = 0;
  /** Calls sent and not yet answered. */
  private inFlight = 0;

  constructor(client: SQSClient, queueUrl: string, opts: SqsQueueOptions = {}) {
    this.client = client;
    this.queueUrl = queueUrl;
    this.callSpacingMs = opts.callSpacingMs ?? CALL_SPACING_MS;
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
      else this.flushTimer ??= this.schedule();
    });
  }

  /**
   * What is pending goes at the end of this turn, or under load once the last call is
   * `callSpacingMs` old.
   */
  private schedule(): NodeJS.Immediate | NodeJS.Timeout {
    const loaded = this.inFlight > 0 || this.lastCallJobs > 1;
    const wait = loaded ? this.lastCallAt + this.callSpacingMs - performance.now() : 0;
    return wait > 0 ? setTimeout(() => this.flush(), wait) : setImmediate(() => this.flush());
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
    if (batch.length === 0) return;
    this.lastCallAt = performance.now();
    this.lastCallJobs = batch.length;
    this.inFlight++;
    if (batch.length === 1) void this.sendOne(batch[0]!);
    else void this.sendBatch(batch);
  }

  /** One call of {@link flush}'s; no longer on its way once it answers, before any caller hears. */
  private async call<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } finally {
      this.inFlight--;
    }
  }

  private async sendOne(send: PendingSend): Promise<void> {
    const { MessageBody, MessageAttributes } = send.entry;
    try {
      await this.call(() =>
        this.client.send(
          new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody, MessageAttributes }),
        ),
      );
      send.resolve();
    } catch (err) {
      send.reject(notAccepted(err));
    }
  }

  private async sendBatch(batch: PendingSend[]): Promise<void> {
    let out: SendMessageBatchCommandOutput;
    try {
      out = await this.call(() =>
        this.client.send(
          new SendMessageBatchCommand({
            QueueUrl: this.queueUrl,
            Entries: batch.map((b) => b.entry),
          }),
        ),
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
  /**
   * The client for long polls (default: `client`). A long poll is cut short on stop with an abort
   * signal, and the SDK drops a client's cached middleware (`cacheMiddleware`) at every call made
   * with options: with a client of their own, the deletes and visibility changes on `client`
   * keep theirs.
   */
  receiveClient?: SQSClient;
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
  /**
   * How long a finished job's delete waits for others to share its `DeleteMessageBatch` call
   * (default 20 ms). The user already has the result; the message stays invisible meanwhile.
   */
  deleteLingerMs?: number;
  /** Calls that fail a message's delete before it is given up (default 5). */
  deleteAttempts?: number;
  /**
   * Messages taken beyond the free slots, to start as slots come free (default 0). One receive
   * then serves several jobs even when slots free one at a time; the messages wait here, kept
   * invisible by the heartbeat like running ones, instead of in the queue, so only a consumer
   * that no other worker shares the queue with should take them (the embedded default).
   */
  prefetch?: number;
}

/** A message this worker holds: received, not yet deleted or handed back. */
interface Held {
  message: Message;
  /** When its visibility window was last set (received or extended), `performance.now()`. */
  extendedAt: number;
}

/** A finished job's message waiting for its `DeleteMessageBatch`. */
interface PendingDelete {
  held: Held;
  /** Calls that failed it so far. */
  failures: number;
  done: () => void;
}

/** What becomes of a message once its handler is done. */
type Outcome = 'delete' | 'retry' | 'hand-back';

/** Messages whose job ended although their delete did not go through, remembered this long. */
const ENDED_MEMORY_MS = 60 * 60 * 1000;
const ENDED_MEMORY_ENTRIES = 10_000;

/**
 * Consumes jobs from SQS. One long poll asks for as many messages as there are free slots (up to
 * 10), so with several slots free one `ReceiveMessage` serves several jobs, and there are never
 * more jobs running than `concurrency`. While all slots are busy nothing is polled; while the
 * queue is empty one long poll waits (an idle worker costs one request per `waitTimeSeconds`).
 * With `prefetch`, a receive also takes that many more (kept invisible, started as slots come
 * free, handed back on stop), and the next is made once they have all started.
 * Finished jobs' messages are deleted together (`DeleteMessageBatch`, after a short linger);
 * an entry that fails is retried, its message kept invisible meanwhile. Visibility is extended
 * for long jobs (`ChangeMessageVisibilityBatch`, one call for all that need it). A malformed
 * message is moved to the dead-letter queue at once, never retried or crashed on.
 *
 * (`sqs-consumer` was used before: its batch mode waits for a whole received batch before it
 * polls again, so one slow job idles the other slots, and it deletes per message or per batch
 * received; one consumer per slot cost a ReceiveMessage and a DeleteMessage per job.)
 */
export class SqsJobConsumer implements JobConsumer {
  readonly #opts: SqsConsumerOptions;
  readonly #log: Logger;
  /** Jobs in their handler now. */
  #running = 0;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #slotFreed: (() => void) | undefined;
  /** Cuts the long poll short on stop. */
  readonly #pollAbort = new AbortController();
  /** Handed to every handler: aborted when shutdown hands the jobs still running back. */
  readonly #abort = new AbortController();
  /** Handlers running. */
  readonly #jobs = new Set<Promise<unknown>>();
  /** Deletes and visibility changes in flight. */
  readonly #settling = new Set<Promise<unknown>>();
  /** Messages received and not yet settled, by receipt handle. */
  readonly #held = new Map<string, Held>();
  /** Messages received ahead (`prefetch`), oldest first, waiting for a slot. */
  readonly #ready: Held[] = [];
  #heartbeat: NodeJS.Timeout | undefined;
  #deletes: PendingDelete[] = [];
  #deleteTimer: NodeJS.Timeout | undefined;
  /** Messages whose job ended but whose delete was given up: MessageId → when. */
  readonly #ended = new Map<string, number>();

  constructor(opts: SqsConsumerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
  }

  start(handler: JobHandler): void {
    this.#loop ??= this.#poll(handler);
  }

  async #poll(handler: JobHandler): Promise<void> {
    const { queueUrl, concurrency } = this.#opts;
    const client = this.#opts.receiveClient ?? this.#opts.client;
    const prefetch = this.#opts.prefetch ?? 0;
    let backoffMs = 0;
    while (!this.#stopping) {
      while (this.#ready.length > 0 && this.#running < concurrency)
        this.#dispatch(this.#ready.shift()!, handler);
      const free = concurrency - this.#running;
      // Taken ahead: asked for again once they are all started (one receive serves several jobs).
      const wanted = this.#ready.length > 0 ? 0 : free + prefetch;
      if (wanted <= 0) {
        await new Promise<void>((resolve) => {
          this.#slotFreed = resolve;
        });
        continue;
      }
      let messages: Message[];
      try {
        const out = await client.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: Math.min(MAX_BATCH_ENTRIES, wanted),
            WaitTimeSeconds: this.#opts.waitTimeSeconds,
            VisibilityTimeout: this.#opts.visibilityTimeoutSeconds,
            MessageSystemAttributeNames: ['ApproximateReceiveCount'],
          }),
          { abortSignal: this.#pollAbort.signal },
        );
        messages = out.Messages ?? [];
        backoffMs = 0;
      } catch (err) {
        if (this.#stopping) return;
        backoffMs = Math.min(10_000, backoffMs === 0 ? 250 : backoffMs * 2);
        this.#log.warn({ err, retryInMs: backoffMs }, 'sqs receive failed');
        await sleep(backoffMs, undefined, { signal: this.#pollAbort.signal }).catch(() => {});
        continue;
      }
      const now = performance.now();
      for (const [i, message] of messages.entries()) {
        const held: Held = { message, extendedAt: now };
        this.#held.set(message.ReceiptHandle ?? '', held);
        // Never more than was asked for; and none once stopping. Slots that came free during
        // the poll take theirs at the top of the loop.
        if (this.#stopping || i >= wanted) this.#settle(held, 'hand-back');
        else this.#ready.push(held);
      }
      if (this.#held.size > 0) this.#startHeartbeat();
    }
  }

  #dispatch(held: Held, handler: JobHandler): void {
    this.#running++;
    const work = this.#handle(held.message, handler);
    this.#jobs.add(work);
    void work.then((outcome) => {
      this.#jobs.delete(work);
      this.#running--;
      const wake = this.#slotFreed;
      this.#slotFreed = undefined;
      wake?.();
      this.#settle(held, outcome);
    });
  }

  /** Run one message's job; never throws. */
  async #handle(message: Message, handler: JobHandler): Promise<Outcome> {
    const messageId = message.MessageId ?? '';
    if (this.#ended.has(messageId)) {
      // Its job ended here, but the delete did not go through: delete it now, do not run it again.
      this.#log.info({ messageId }, 'a finished job came back from the queue: deleting it');
      return 'delete';
    }
    const job = this.#parse(message);
    if (!job) {
      try {
        await this.#deadLetter(message);
        return 'delete';
      } catch (err) {
        this.#log.warn({ err, messageId }, 'could not dead-letter a malformed message');
        return 'retry';
      }
    }
    try {
      const attempt = Number(message.Attributes?.ApproximateReceiveCount ?? 1) || 1;
      await handler(job, { signal: this.#abort.signal, attempt });
      return 'delete';
    } catch (err) {
      // Cut short by shutdown: hand the job back to the queue for another worker.
      if (this.#abort.signal.aborted) return 'hand-back';
      if (isRetryable(err)) {
        this.#log.warn({ err, jobId: job.jobId }, 'job will be retried');
        return 'retry';
      }
      // Non-retryable failures were reported by the handler; drop the message.
      this.#log.error({ err, jobId: job.jobId }, 'job failed for good');
      return 'delete';
    }
  }

  /** Delete the message, or make it visible again; it stays held (and invisible) until then. */
  #settle(held: Held, outcome: Outcome): void {
    // A job handed back at shutdown waits as long as a retry: a long poll cut short by the stop
    // may still be waiting at the queue's end, and would take (and lose) a message visible at once.
    const settled = (
      outcome === 'delete'
        ? this.#delete(held)
        : this.#changeVisibility(held, this.#opts.retryDelaySeconds ?? 5)
    ).finally(() => {
      this.#held.delete(held.message.ReceiptHandle ?? '');
      if (this.#held.size === 0) this.#stopHeartbeat();
      this.#settling.delete(settled);
    });
    this.#settling.add(settled);
  }

  async #changeVisibility(held: Held, seconds: number): Promise<void> {
    try {
      await this.#opts.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.#opts.queueUrl,
          ReceiptHandle: held.message.ReceiptHandle,
          VisibilityTimeout: seconds,
        }),
      );
    } catch (err) {
      // It becomes visible when its current window ends instead.
      this.#log.warn({ err, messageId: held.message.MessageId }, 'could not hand a message back');
    }
  }

  #delete(held: Held): Promise<void> {
    return new Promise<void>((done) => this.#queueDelete({ held, failures: 0, done }));
  }

  #queueDelete(pending: PendingDelete): void {
    this.#deletes.push(pending);
    if (this.#deletes.length >= MAX_BATCH_ENTRIES || this.#stopping) this.#flushDeletes();
    else
      this.#deleteTimer ??= setTimeout(() => this.#flushDeletes(), this.#opts.deleteLingerMs ?? 20);
  }

  #flushDeletes(): void {
    clearTimeout(this.#deleteTimer);
    this.#deleteTimer = undefined;
    while (this.#deletes.length > 0)
      void this.#deleteBatch(this.#deletes.splice(0, MAX_BATCH_ENTRIES));
  }

  async #deleteBatch(batch: PendingDelete[]): Promise<void> {
    let retry: Array<{ pending: PendingDelete; why: string }> = [];
    try {
      const out = await this.#opts.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.#opts.queueUrl,
          Entries: batch.map((d, i) => ({
            Id: String(i),
            ReceiptHandle: d.held.message.ReceiptHandle,
          })),
        }),
      );
      // A 200 can still carry failed entries: each is looked at on its own.
      const ok = new Set((out.Successful ?? []).map((s) => s.Id));
      const failed = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
      for (const [i, pending] of batch.entries()) {
        const failure = failed.get(String(i));
        if (!failure && ok.has(String(i))) pending.done();
        else if (failure?.SenderFault)
          // The request itself was wrong for this entry (e.g. ReceiptHandleIsInvalid: the message
          // is no longer ours): sending it again cannot succeed.
          this.#giveUp(pending, `${failure.Code}: ${failure.Message ?? ''}`);
        else retry.push({ pending, why: failure ? `${failure.Code}` : 'entry not answered' });
      }
    } catch (err) {
      // The call failed as a whole (the SDK has already retried throttling and 5xx answers).
      retry = batch.map((pending) => ({ pending, why: String((err as Error)?.name ?? err) }));
    }
    const attempts = this.#opts.deleteAttempts ?? 5;
    for (const { pending, why } of retry) {
      pending.failures++;
      if (pending.failures >= attempts) {
        this.#giveUp(pending, why);
        continue;
      }
      this.#log.warn(
        { messageId: pending.held.message.MessageId, failures: pending.failures, why },
        'deleting a finished job’s message failed; trying again',
      );
      const delayMs = 100 * 2 ** pending.failures;
      setTimeout(() => this.#queueDelete(pending), this.#stopping ? 0 : delayMs);
    }
  }

  /**
   * The message will come back when its visibility ends. Its job is over: remember it, so that
   * if it comes back here it is deleted without running (elsewhere the relay answers the job's
   * "generating" push as a duplicate, and the worker skips it).
   */
  #giveUp(pending: PendingDelete, why: string): void {
    const messageId = pending.held.message.MessageId;
    this.#log.error({ messageId, why }, 'could not delete a finished job’s message');
    if (messageId) {
      const now = Date.now();
      this.#ended.set(messageId, now);
      for (const [id, at] of this.#ended) {
        if (this.#ended.size <= ENDED_MEMORY_ENTRIES && now - at < ENDED_MEMORY_MS) break;
        this.#ended.delete(id);
      }
    }
    pending.done();
  }

  /** Keep held messages invisible: every message held a third of the window gets a new one. */
  #startHeartbeat(): void {
    if (this.#heartbeat) return;
    const windowMs = this.#opts.visibilityTimeoutSeconds * 1000;
    this.#heartbeat = setInterval(() => void this.#extend(windowMs), windowMs / 6);
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  async #extend(windowMs: number): Promise<void> {
    const now = performance.now();
    const due = [...this.#held.values()].filter((h) => now - h.extendedAt >= windowMs / 3);
    for (let i = 0; i < due.length; i += MAX_BATCH_ENTRIES) {
      const batch = due.slice(i, i + MAX_BATCH_ENTRIES);
      for (const h of batch) h.extendedAt = now;
      try {
        const out = await this.#opts.client.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.#opts.queueUrl,
            Entries: batch.map((h, j) => ({
              Id: String(j),
              ReceiptHandle: h.message.ReceiptHandle,
              VisibilityTimeout: this.#opts.visibilityTimeoutSeconds,
            })),
          }),
        );
        for (const f of out.Failed ?? []) {
          const h = batch[Number(f.Id)];
          this.#log.warn(
            { messageId: h?.message.MessageId, code: f.Code, message: f.Message },
            'could not extend a running job’s visibility',
          );
          // A failure that is not the request's fault may pass at the next beat.
          if (h && !f.SenderFault) h.extendedAt = 0;
        }
      } catch (err) {
        if (!this.#stopping) this.#log.warn({ err }, 'could not extend running jobs’ visibility');
        for (const h of batch) h.extendedAt = 0;
      }
    }
  }

  #parse(message: Message): Job | undefined {
    let body: unknown;
    try {
      body = JSON.parse(message.Body ?? '');
    } catch {
      this.#log.error({ messageId: message.MessageId }, 'queue message is not JSON');
      return undefined;
    }
    const result = JobSchema.safeParse(body);
    if (!result.success) {
      this.#log.error(
        { messageId: message.MessageId, problems: describeIssues(result.error) },
        'queue message is not a valid job',
      );
      return undefined;
    }
    return result.data;
  }

  async #deadLetter(message: Message): Promise<void> {
    if (!this.#opts.deadLetterUrl) {
      this.#log.error(
        { messageId: message.MessageId },
        'no dead-letter queue: dropping malformed message',
      );
      return;
    }
    await this.#opts.client.send(
      new SendMessageCommand({
        QueueUrl: this.#opts.deadLetterUrl,
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
    if (this.#stopping) return;
    this.#stopping = true;
    this.#pollAbort.abort();
    this.#slotFreed?.();
    // Taken ahead and never started: back to the queue now, for another worker (or a restart).
    for (const held of this.#ready.splice(0)) this.#settle(held, 'hand-back');
    const drainMs = this.#opts.drainMs ?? 25_000;
    if ((await withTimeout(Promise.all(this.#jobs), drainMs)) === 'timeout') {
      this.#log.warn(
        { jobs: this.#jobs.size },
        'jobs still running at shutdown: handing them back',
      );
      this.#abort.abort();
      await withTimeout(Promise.all(this.#jobs), 10_000);
    }
    this.#abort.abort();
    await this.#loop;
    // Finished jobs' deletes go out now, not after their linger.
    this.#flushDeletes();
    await withTimeout(Promise.all(this.#settling), 10_000);
    this.#stopHeartbeat();
  }
}
