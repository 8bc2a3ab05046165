/**
 * Fan-out of job events between relay instances over Redis pub/sub, so any instance can serve
 * any job's WebSocket and polling clients. Each instance publishes the events that start with
 * it (a job queued here, a worker's push received here, with the image for `done`) and applies
 * the others' events to its own tracker as `remote`: waiters are told, but chat delivery,
 * metrics and admission stay with the instance that received the change. Pub/sub holds nothing
 * at rest; images stay in each instance's memory, under its own RESULT_BUFFER_BYTES.
 *
 * Wire format: one binary message per event, `uint32 BE header length | header JSON | images`;
 * a `done` change lists each image's byte length (and seed, size) in `images`, in the order the
 * bytes follow (a header without `images` carries one image, as relays before N images did).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import { IMAGE_TYPES, sniffImageType } from '../contracts/image-types.ts';
import { IMAGE_COUNT_MAX, JOB_ID_PATTERN, JOB_TASKS } from '../contracts/job.ts';
import { PushSourceSchema } from '../contracts/push.ts';
import { PREVIEW_MAX_BYTES } from '../contracts/ws-frames.ts';
import {
  BufferedImage,
  type JobRecord,
  type JobTracker,
  type JobUpdate,
  type ProgressUpdate,
} from './job-tracker.ts';

const ErrorSchema = z.object({ code: z.string().max(100), message: z.string().max(2000) });
const optionalInt = z.number().int().nonnegative().optional();
/** What a job says of itself beyond the prompt and base parameters. */
const jobShape = {
  task: z.enum(JOB_TASKS).optional(),
  count: z.number().int().min(1).max(IMAGE_COUNT_MAX).optional(),
  steps: optionalInt,
  strength: z.number().gt(0).max(1).optional(),
};
const EventImageSchema = z.object({
  size: z.number().int().positive(),
  seed: optionalInt,
  width: optionalInt,
  height: optionalInt,
});

/** The JSON header of one fanned-out event. */
const JobEventSchema = z.discriminatedUnion('kind', [
  z.object({
    v: z.literal(1),
    from: z.string().max(64),
    kind: z.literal('queued'),
    jobId: z.string().regex(JOB_ID_PATTERN),
    createdAt: z.number().int().nonnegative(),
    platform: z.string().max(32).optional(),
    userId: z.string().max(200).optional(),
    prompt: z.string().max(4000).optional(),
    seed: optionalInt,
    width: optionalInt,
    height: optionalInt,
    ...jobShape,
  }),
  z.object({
    v: z.literal(1),
    from: z.string().max(64),
    kind: z.literal('change'),
    jobId: z.string().regex(JOB_ID_PATTERN),
    state: z.enum(['generating', 'done', 'failed', 'expired', 'cancelled']),
    createdAt: z.number().int().nonnegative().optional(),
    prompt: z.string().max(4000).optional(),
    seed: optionalInt,
    width: optionalInt,
    height: optionalInt,
    generator: z.string().max(100).optional(),
    generationMs: z.number().nonnegative().optional(),
    error: ErrorSchema.optional(),
    ...jobShape,
    source: PushSourceSchema.optional(),
    cancelledBeforeStart: z.boolean().optional(),
    images: z.array(EventImageSchema).min(1).max(IMAGE_COUNT_MAX).optional(),
  }),
  z.object({
    v: z.literal(1),
    from: z.string().max(64),
    kind: z.literal('progress'),
    jobId: z.string().regex(JOB_ID_PATTERN),
    step: z.number().int().nonnegative(),
    steps: z.number().int().positive(),
    /** The preview's bytes follow the header. */
    preview: z
      .object({
        contentType: z.enum(IMAGE_TYPES),
        size: z.number().int().positive().max(PREVIEW_MAX_BYTES),
        width: optionalInt,
        height: optionalInt,
      })
      .optional(),
  }),
  z.object({
    v: z.literal(1),
    from: z.string().max(64),
    kind: z.literal('forget'),
    jobId: z.string().regex(JOB_ID_PATTERN),
  }),
]);
/** One job event as relays exchange it. */
export type JobEvent = z.infer<typeof JobEventSchema>;

/** Encode an event and its image (as the chunks it arrived in) into one binary message. */
export function encodeJobEvent(event: JobEvent, image: readonly Buffer[] = []): Buffer {
  const header = Buffer.from(JSON.stringify(event), 'utf8');
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(header.length);
  return Buffer.concat([length, header, ...image]);
}

/**
 * Decode a message from {@link encodeJobEvent}; throws on anything malformed. `images` are the
 * bytes that follow the header, split as the header's `images` lists them.
 */
export function decodeJobEvent(message: Buffer): { event: JobEvent; images: Buffer[] } {
  if (message.length < 4) throw new Error('message shorter than its length prefix');
  const length = message.readUInt32BE(0);
  if (4 + length > message.length) throw new Error('header runs past the message');
  const event = JobEventSchema.parse(JSON.parse(message.subarray(4, 4 + length).toString('utf8')));
  const rest = message.subarray(4 + length);
  const listed =
    event.kind === 'change'
      ? event.images
      : event.kind === 'progress' && event.preview
        ? [event.preview]
        : undefined;
  if (!listed) return { event, images: rest.length > 0 ? [rest] : [] };
  if (listed.reduce((n, i) => n + i.size, 0) !== rest.length)
    throw new Error('image lengths do not add up to the bytes after the header');
  const images: Buffer[] = [];
  let offset = 0;
  for (const { size } of listed) {
    images.push(rest.subarray(offset, offset + size));
    offset += size;
  }
  return { event, images };
}

/** What {@link JobFanout} needs. */
export interface JobFanoutOptions {
  redisUrl: string;
  /** REDIS_KEY_PREFIX: the channel is `<prefix>relay:jobs`. */
  prefix: string;
  logger: Logger;
  /** Images larger than this (PUSH_MAX_BYTES) are not accepted from other instances either. */
  maxImageBytes: number;
  /** This instance's id (random by default). */
  instanceId?: string;
}

/** Publishes this relay's job events and applies other relays' events to its tracker. */
export class JobFanout {
  /** Random id of this relay instance; its own messages are skipped when they come back. */
  readonly instanceId: string;
  readonly channel: string;
  /** Resolves once subscribed, or once Redis has failed to answer (the relay runs on locally). */
  readonly ready: Promise<void>;
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly logger: Logger;
  private readonly maxImageBytes: number;
  private tracker: JobTracker | undefined;
  /** Publishing failed since Redis last became ready (logged once per outage). */
  private degraded = false;
  private closed = false;

  constructor(opts: JobFanoutOptions) {
    this.instanceId = opts.instanceId ?? randomBytes(9).toString('base64url');
    this.channel = `${opts.prefix}relay:jobs`;
    this.logger = opts.logger.child({ part: 'fanout', instance: this.instanceId });
    this.maxImageBytes = opts.maxImageBytes;
    // Never queue events (images) in memory while Redis is away: publish fails at once.
    this.publisher = new Redis(opts.redisUrl, { enableOfflineQueue: false });
    // The one SUBSCRIBE waits for a connection however long it takes; ioredis resubscribes on
    // every reconnect after that.
    this.subscriber = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    let reportedError = false;
    for (const [name, client] of [
      ['publisher', this.publisher],
      ['subscriber', this.subscriber],
    ] as const) {
      // ioredis emits an error per reconnect attempt: log one per outage.
      client.on('error', (err: Error) => {
        if (reportedError) return;
        reportedError = true;
        this.logger.warn({ err, client: name }, 'fan-out redis unavailable; events stay local');
      });
      client.on('ready', () => {
        if (reportedError || this.degraded)
          this.logger.info({ client: name }, 'fan-out redis back');
        reportedError = false;
        this.degraded = false;
      });
    }
    this.subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.toString() === this.channel) this.receive(message);
    });
    const firstError = (client: Redis) =>
      new Promise<void>((resolve) => client.once('error', () => resolve()));
    const publisherReady = new Promise<void>((resolve) => this.publisher.once('ready', resolve));
    const subscribed = this.subscriber.subscribe(this.channel).then(
      () => this.logger.info({ channel: this.channel }, 'fan-out subscribed'),
      (err: unknown) => this.logger.warn({ err }, 'fan-out subscribe failed'),
    );
    this.ready = Promise.all([
      Promise.race([publisherReady, firstError(this.publisher)]),
      Promise.race([subscribed, firstError(this.subscriber)]),
    ]).then(() => {});
  }

  /** Publish the tracker's local events and apply remote ones to it. */
  attach(tracker: JobTracker): void {
    this.tracker = tracker;
    tracker.on('update', (u: JobUpdate) => {
      if (!u.remote) this.publishUpdate(u.record);
    });
    tracker.on('progress', (u: ProgressUpdate) => {
      if (u.remote) return;
      const { step, steps, preview } = u.progress;
      this.publish(
        {
          v: 1,
          from: this.instanceId,
          kind: 'progress',
          jobId: u.record.jobId,
          step,
          steps,
          ...(preview
            ? {
                preview: {
                  contentType: preview.contentType as (typeof IMAGE_TYPES)[number],
                  size: preview.size,
                  width: preview.info.width,
                  height: preview.info.height,
                },
              }
            : {}),
        },
        preview?.chunks,
      );
    });
    tracker.on('forgotten', ({ jobId, remote }: { jobId: string; remote: boolean }) => {
      if (!remote) this.publish({ v: 1, from: this.instanceId, kind: 'forget', jobId });
    });
  }

  /** Close both connections (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.publisher.disconnect();
    this.subscriber.disconnect();
  }

  private publishUpdate(record: JobRecord): void {
    const base = { v: 1 as const, from: this.instanceId, jobId: record.jobId };
    const params = {
      seed: record.seed,
      width: record.width,
      height: record.height,
      task: record.task,
      count: record.count,
      steps: record.steps,
      strength: record.strength,
    };
    if (record.state === 'queued') {
      // The sealed reply target stays here: chat positions are sent by the queuing instance,
      // and the worker carries the target back to whichever instance it pushes to.
      this.publish({
        ...base,
        kind: 'queued',
        createdAt: record.createdAt,
        platform: record.platform,
        userId: record.userId,
        prompt: record.prompt,
        ...params,
      });
      return;
    }
    const images = record.state === 'done' ? record.images : undefined;
    this.publish(
      {
        ...base,
        kind: 'change',
        state: record.state,
        createdAt: record.createdAt,
        prompt: record.prompt,
        ...params,
        generator: record.generator,
        generationMs: record.generationMs,
        error: record.error,
        source: record.source,
        ...(record.cancelledBeforeStart ? { cancelledBeforeStart: true } : {}),
        ...(images
          ? {
              images: images.map((image) => ({
                size: image.size,
                seed: image.info.seed,
                width: image.info.width,
                height: image.info.height,
              })),
            }
          : {}),
      },
      images?.flatMap((image) => image.chunks),
    );
  }

  private publish(event: JobEvent, image?: readonly Buffer[]): void {
    if (this.closed) return;
    // Publishing never holds up /enqueue or /push: a failure is logged and the job goes on
    // locally.
    this.publisher.publish(this.channel, encodeJobEvent(event, image)).catch((err: unknown) => {
      if (this.degraded) return;
      this.degraded = true;
      this.logger.warn({ err, jobId: event.jobId }, 'fan-out publish failed; events stay local');
    });
  }

  private receive(message: Buffer): void {
    const tracker = this.tracker;
    if (!tracker) return;
    let decoded: ReturnType<typeof decodeJobEvent>;
    try {
      decoded = decodeJobEvent(message);
    } catch (err) {
      this.logger.warn({ err }, 'fan-out message ignored: malformed');
      return;
    }
    const { event, images } = decoded;
    if (event.from === this.instanceId) return;
    if (event.kind === 'queued') {
      const { v: _v, from: _from, kind: _kind, ...info } = event;
      tracker.learnQueued(info);
      return;
    }
    if (event.kind === 'forget') {
      tracker.forget(event.jobId, { remote: true });
      return;
    }
    if (event.kind === 'progress') {
      const bytes = images[0];
      const preview =
        event.preview && bytes && sniffImageType(bytes) === event.preview.contentType
          ? new BufferedImage(bytes, event.preview.contentType, {
              width: event.preview.width,
              height: event.preview.height,
            })
          : undefined;
      tracker.reportProgress(
        event.jobId,
        { step: event.step, steps: event.steps, ...(preview ? { preview } : {}) },
        { remote: true },
      );
      return;
    }
    let buffered: BufferedImage[] | undefined;
    if (event.state === 'done') {
      const types = images.map((image) =>
        image.length <= this.maxImageBytes ? sniffImageType(image) : undefined,
      );
      if (images.length === 0 || types.some((type) => !type)) {
        this.logger.warn({ jobId: event.jobId }, 'fan-out "done" ignored: no usable image');
        return;
      }
      buffered = images.map((image, i) => {
        const info = event.images?.[i];
        return new BufferedImage(image, types[i]!, {
          seed: info?.seed ?? event.seed,
          width: info?.width ?? event.width,
          height: info?.height ?? event.height,
        });
      });
    }
    const { v: _v, from: _from, kind: _kind, jobId, images: _images, ...change } = event;
    tracker.apply(jobId, change, buffered, { remote: true });
  }
}
