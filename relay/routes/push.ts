/**
 * `POST /push`: signed results and status changes from workers. `application/octet-stream` (the
 * body is the image bytes alone, back to back; the meta is in the v3-signed `X-Imagine-Meta`
 * header), multipart (`meta` JSON part + one `image` file part per image, described in order by
 * `meta.images`) or, for workers written against the seed, JSON with a base64 image.
 * Authentication is decided from the headers before the body is read (`push-auth.ts`: a v2
 * header signature over the whole body, every image part included, or a bounded number of
 * body-signed v1 pushes); the body then streams through the hash or HMAC and the multipart
 * parser at once, and nothing is acted on unless it is the body that was signed.
 */
import { Busboy, type BusboyInstance } from '@fastify/busboy';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyPluginAsync,
  FastifyRequest,
} from 'fastify';
import type { HeldImage } from '../../contracts/delivery.ts';
import { ImagineError } from '../../contracts/errors.ts';
import { header } from '../../contracts/headers.ts';
import { sniffImageType } from '../../contracts/image-types.ts';
import { describeIssues, IMAGE_COUNT_MAX } from '../../contracts/job.ts';
import {
  isTerminal,
  type JobState,
  LegacyPushSchema,
  META_HEADER_MAX,
  type PushMeta,
  PushMetaSchema,
} from '../../contracts/push.ts';
import { isDelivered, type PushSafety, withheldOf } from '../../contracts/safety.ts';
import type { ReplyTarget } from '../../contracts/seal.ts';
import { PREVIEW_MAX_BYTES } from '../../contracts/ws-frames.ts';
import { asModeration } from '../../moderation/index.ts';
import { scopeNoun } from '../../moderation/policy.ts';
import { scopeKeyOf } from '../../moderation/settings.ts';
import { checkImage } from '../image-check.ts';
import { ledgerEntryOf } from '../job-ledger.ts';
import { BufferedImage } from '../job-tracker.ts';
import { createPushGate, type PushAuth } from '../push-auth.ts';
import { recallJob } from './jobs.ts';

/** A push as its body parser hands it on: checked meta, and the parts it carried. */
export interface ParsedPush {
  meta: PushMeta;
  /** The images as they arrived, in order: chunks of the request body, never copied. */
  images: Buffer[][];
  /** A progress report's `preview` part, when it has one. */
  preview?: Buffer[] | undefined;
  legacy: boolean;
}

/** Feeds a multipart body, chunk by chunk, to busboy; resolves with `meta` and the `image`s. */
function createMultipartSplitter(contentType: string, maxImage: number) {
  const out: { meta?: string; images: Buffer[][]; preview?: Buffer[] } = { images: [] };
  let failure: unknown;
  let settle: { resolve: (v: typeof out) => void; reject: (e: unknown) => void } | undefined;
  const fail = (err: unknown) => {
    failure ??=
      err instanceof ImagineError
        ? err
        : new ImagineError('INVALID_PUSH', 'body is not valid multipart/form-data', { cause: err });
    settle?.reject(failure);
  };
  let parser: BusboyInstance | undefined;
  try {
    parser = new Busboy({
      headers: { 'content-type': contentType },
      limits: {
        fields: 4,
        files: IMAGE_COUNT_MAX,
        parts: 4 + IMAGE_COUNT_MAX,
        fieldSize: 64 * 1024,
        fileSize: maxImage,
      },
    });
  } catch (err) {
    fail(err);
  }
  parser?.on('field', (name: string, value: string, _nameTrunc: boolean, valueTrunc: boolean) => {
    if (valueTrunc) fail(new ImagineError('INVALID_PUSH', `"${name}" part is too long`));
    if (name === 'meta') out.meta = value;
  });
  parser?.on('file', (name: string, stream: NodeJS.ReadableStream) => {
    const chunks: Buffer[] = [];
    // Kept in the order the parts came, whenever each ends.
    if (name === 'image') out.images.push(chunks);
    else if (name === 'preview') {
      if (out.preview) fail(new ImagineError('INVALID_PUSH', 'at most one "preview" part'));
      out.preview = chunks;
    }
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('limit', () =>
      fail(new ImagineError('PAYLOAD_TOO_LARGE', `image is over the ${maxImage}-byte limit`)),
    );
    stream.on('end', () => {
      if (name === 'meta') out.meta = Buffer.concat(chunks).toString('utf8');
    });
  });
  parser?.on('partsLimit', () => fail(new ImagineError('INVALID_PUSH', 'too many parts')));
  parser?.on('filesLimit', () =>
    fail(new ImagineError('INVALID_PUSH', `at most ${IMAGE_COUNT_MAX} images per push`)),
  );
  parser?.on('error', fail);
  const finished = new Promise<typeof out>((resolve, reject) => {
    settle = { resolve, reject };
    if (failure) reject(failure);
    parser?.on('finish', () => (failure ? reject(failure) : resolve(out)));
  });
  finished.catch(() => {});
  return {
    write(chunk: Buffer): void {
      if (!failure) parser?.write(chunk);
    },
    end(): Promise<typeof out> {
      if (!failure) parser?.end();
      return finished;
    },
  };
}

/** Parse and check a push's meta JSON; `where` names it in the error ('"meta" part', ...). */
function parseMeta(text: string, where: string): PushMeta {
  let metaJson: unknown;
  try {
    metaJson = JSON.parse(text);
  } catch (err) {
    throw new ImagineError('INVALID_PUSH', `${where} is not JSON`, { cause: err });
  }
  const meta = PushMetaSchema.safeParse(metaJson);
  if (!meta.success) throw new ImagineError('INVALID_PUSH', `meta: ${describeIssues(meta.error)}`);
  return meta.data;
}

function parseMultipart(parts: {
  meta?: string;
  images: Buffer[][];
  preview?: Buffer[];
}): ParsedPush {
  if (parts.meta === undefined)
    throw new ImagineError('INVALID_PUSH', 'multipart body needs a "meta" part');
  const meta = parseMeta(parts.meta, '"meta" part');
  if (meta.parts)
    throw new ImagineError(
      'INVALID_PUSH',
      'meta.parts describes an application/octet-stream body; a multipart body has its own parts',
    );
  return checkedParts(meta, parts.images, parts.preview);
}

/** The meta and the file parts agree (count of images, the preview and what it comes with). */
export function checkedParts(
  meta: PushMeta,
  images: Buffer[][],
  preview: Buffer[] | undefined,
): ParsedPush {
  const listed = meta.images?.length;
  if (listed !== undefined && listed !== images.length)
    throw new ImagineError(
      'INVALID_PUSH',
      `meta.images lists ${listed} images but the body has ${images.length} image parts`,
    );
  if (listed === undefined && images.length > 1)
    throw new ImagineError(
      'INVALID_PUSH',
      `${images.length} image parts need meta.images to describe each`,
    );
  if (preview && !meta.preview)
    throw new ImagineError('INVALID_PUSH', 'a "preview" part needs meta.preview to describe it');
  if (meta.preview && !preview)
    throw new ImagineError(
      'INVALID_PUSH',
      'meta.preview describes a "preview" part the body lacks',
    );
  if ((meta.progress || meta.preview) && meta.status !== 'generating')
    throw new ImagineError('INVALID_PUSH', 'progress and preview belong to "generating" pushes');
  if (meta.preview && !meta.progress)
    throw new ImagineError('INVALID_PUSH', 'a preview comes with a progress report');
  return { meta, images, preview, legacy: false };
}

/** Cut the chunks of a body into parts of the given sizes (views, never copies). */
function splitChunks(chunks: readonly Buffer[], sizes: readonly number[]): Buffer[][] {
  const parts: Buffer[][] = [];
  let i = 0;
  let from = 0;
  for (const size of sizes) {
    const part: Buffer[] = [];
    for (let left = size; left > 0; ) {
      const chunk = chunks[i]!;
      const take = Math.min(left, chunk.length - from);
      part.push(from === 0 && take === chunk.length ? chunk : chunk.subarray(from, from + take));
      left -= take;
      from += take;
      if (from === chunk.length) {
        i++;
        from = 0;
      }
    }
    parts.push(part);
  }
  return parts;
}

/**
 * The meta of an `application/octet-stream` push, from its signed `X-Imagine-Meta` header, and
 * the byte length of each part its body holds: checked before the body is read.
 */
function octetPlan(
  header: string,
  length: number,
  maxImage: number,
): { meta: PushMeta; parts: number[]; preview: boolean } {
  if (header.length > META_HEADER_MAX)
    throw new ImagineError(
      'INVALID_PUSH',
      `X-Imagine-Meta is ${header.length} characters; the limit is ${META_HEADER_MAX} (send a bigger meta as multipart/form-data)`,
    );
  if (!/^[A-Za-z0-9_-]*$/.test(header))
    throw new ImagineError('INVALID_PUSH', 'X-Imagine-Meta is not base64url');
  const meta = parseMeta(Buffer.from(header, 'base64url').toString('utf8'), 'X-Imagine-Meta');
  // What the body holds: a "done" push's images, a progress report's preview, or nothing.
  const preview = meta.status === 'generating' && meta.preview !== undefined;
  const parts = meta.parts ?? (length > 0 || preview ? [length] : []);
  const sum = parts.reduce((n, p) => n + p, 0);
  if (sum !== length)
    throw new ImagineError(
      'INVALID_PUSH',
      `meta.parts adds up to ${sum} bytes but the body is ${length} (Content-Length)`,
    );
  if (preview && parts.length !== 1)
    throw new ImagineError('INVALID_PUSH', 'a progress report carries one preview part');
  const limit = preview ? PREVIEW_MAX_BYTES : maxImage;
  for (const [i, size] of parts.entries())
    if (size > limit) {
      const which = preview ? 'the preview' : parts.length > 1 ? `image ${i + 1}` : 'image';
      throw new ImagineError(
        'PAYLOAD_TOO_LARGE',
        `${which} is ${size} bytes; the limit is ${limit}`,
      );
    }
  return { meta, parts, preview };
}

function parseLegacy(body: Buffer): ParsedPush {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ImagineError('INVALID_JSON', 'body is not valid JSON', { cause: err });
  }
  const parsed = LegacyPushSchema.safeParse(json);
  if (!parsed.success) throw new ImagineError('INVALID_PUSH', describeIssues(parsed.error));
  const image = Buffer.from(parsed.data.image, 'base64');
  return { meta: { jobId: parsed.data.job_id, status: 'done' }, images: [[image]], legacy: true };
}

/**
 * Count every safety decision and write the ones that changed what was delivered to the scope's
 * audit log: who asked, which job, which image, why. Never the image or the prompt.
 */
function recordSafety(relay: FastifyInstance['relay'], jobId: string, safety: PushSafety): void {
  const platform = safety.platform ?? 'unknown';
  for (const v of safety.verdicts) relay.metrics.safety.inc({ action: v.action, platform });
  const moderation = asModeration(relay.admission);
  const flagged = safety.verdicts.filter((v) => v.action !== 'deliver');
  if (!moderation || flagged.length === 0 || !safety.platform) return;
  const scopeKey = scopeKeyOf({
    platform: safety.platform,
    ...(safety.scopeId === undefined ? {} : { scopeId: safety.scopeId }),
  });
  for (const v of flagged) {
    const why = `score ${v.score?.toFixed(2) ?? '?'} ≥ ${v.threshold}${v.classifier ? `, ${v.classifier}` : ''}${v.generatorScore === undefined ? '' : `, generator ${v.generatorScore.toFixed(2)}`}`;
    void moderation.note(scopeKey, {
      at: Date.now(),
      actorId: safety.userId ?? 'unknown',
      actorName: 'output safety',
      action: `safety ${v.action}: image ${v.index + 1} of job ${jobId} (${why})`,
    });
  }
}

/** One pushed image output safety holds for a moderator, with its verdict. */
interface HeldPart {
  image: BufferedImage;
  verdict: NonNullable<PushMeta['safety']>['verdicts'][number];
}

/**
 * Split a `done` push's images into those delivered and those held for review (every one the
 * verdicts mark `review`, not only the first). When all are held the job ends for its user with
 * `SAFETY_HELD` (or `SAFETY_BLOCKED` when there is nowhere to hold them).
 */
function heldForReview(
  relay: FastifyInstance['relay'],
  meta: PushMeta,
  images: BufferedImage[] | undefined,
) {
  const verdicts = meta.safety?.verdicts ?? [];
  const parts: HeldPart[] = [];
  const delivered: BufferedImage[] = [];
  for (const [i, image] of (images ?? []).entries()) {
    const verdict = verdicts[i];
    if (meta.status === 'done' && verdict?.action === 'review') parts.push({ image, verdict });
    else delivered.push(image);
  }
  const opened =
    parts.length > 0 && meta.replyTarget ? relay.delivery.open(meta.replyTarget) : undefined;
  const target =
    opened &&
    relay.delivery.canReview(opened.platform) &&
    parts.every((p) => p.verdict.reviewChannelId)
      ? opened
      : undefined;
  const noun = scopeNoun(meta.safety?.platform);
  const yours = parts.length === 1 ? 'yours awaits' : `all ${parts.length} of yours await`;
  const error =
    parts.length === 0 || delivered.length > 0
      ? undefined
      : target
        ? {
            code: 'SAFETY_HELD',
            message: `this ${noun}'s safety setting holds flagged images for a moderator: ${yours} review`,
          }
        : {
            code: 'SAFETY_BLOCKED',
            message: `this ${noun}'s safety setting holds flagged images for a moderator, and there is no moderators' channel to hold ${parts.length === 1 ? 'it' : 'them'} in; nothing was delivered`,
          };
  const withheld = withheldOf(verdicts);
  return { parts, delivered, target, error, of: verdicts.length, blocked: withheld?.blocked ?? 0 };
}

function heldImageOf(
  meta: PushMeta,
  part: HeldPart,
  review: ReturnType<typeof heldForReview>,
  createdAt: number,
  target: ReplyTarget,
): HeldImage {
  const { image, verdict } = part;
  return {
    jobId: meta.jobId,
    index: verdict.index,
    image: {
      bytes: image.bytes,
      contentType: image.contentType,
      seed: image.info.seed ?? meta.seed ?? 0,
      width: image.info.width ?? meta.width ?? 0,
      height: image.info.height ?? meta.height ?? 0,
    },
    prompt: meta.prompt,
    generator: meta.generator,
    createdAt,
    heldAt: Date.now(),
    target,
    reviewChannelId: verdict.reviewChannelId!,
    platform: meta.safety?.platform ?? target.platform,
    scopeId: meta.safety?.scopeId,
    userId: meta.safety?.userId,
    score: verdict.score,
    threshold: verdict.threshold,
    of: review.of,
    delivered: review.delivered.length,
    blocked: review.blocked,
  };
}

/** A progress report's preview, checked: small, and the image type it says it is. */
async function previewOf(chunks: Buffer[], meta: PushMeta): Promise<BufferedImage> {
  const image = new BufferedImage(chunks, meta.preview?.contentType ?? 'image/jpeg', {
    width: meta.preview?.width,
    height: meta.preview?.height,
  });
  if (image.size === 0) throw new ImagineError('INVALID_PUSH', 'the preview is empty');
  if (image.size > PREVIEW_MAX_BYTES)
    throw new ImagineError(
      'PAYLOAD_TOO_LARGE',
      `the preview is ${image.size} bytes; the limit is ${PREVIEW_MAX_BYTES}`,
    );
  const sniffed = sniffImageType(image.head(16));
  if (!sniffed || sniffed !== meta.preview?.contentType)
    throw new ImagineError(
      'INVALID_PUSH',
      `meta.preview says ${meta.preview?.contentType} but the preview is ${sniffed ?? 'no image'}`,
    );
  await checkImage(image.bytes, sniffed);
  return image;
}

/** What the relay answers a push it took (changed something or not). */
export interface PushAnswer {
  ok: true;
  jobId: string;
  state: JobState;
  duplicate: boolean;
}

/**
 * A `generating` push for a job already generating (a progress report, or the worker asking
 * whether it was cancelled): record the progress and answer; throws `JOB_CANCELLED` when the job
 * was cancelled, so the worker stops it. Undefined: the push starts the job (a state change).
 */
async function runningPush(
  relay: FastifyInstance['relay'],
  meta: PushMeta,
  preview: BufferedImage | undefined,
): Promise<PushAnswer | undefined> {
  const record = relay.tracker.get(meta.jobId) ?? (await recallJob(relay, meta.jobId));
  if (record?.state === 'cancelled')
    throw new ImagineError('JOB_CANCELLED', 'the job was cancelled; stop it');
  if (record && isTerminal(record.state))
    return { ok: true, jobId: meta.jobId, state: record.state, duplicate: true };
  if (record?.state !== 'generating') return undefined;
  // With other relays, the cancel may have come in there: the ledger they all write says so.
  if (relay.fanout && relay.ledger) {
    const entry = await relay.ledger.recall(meta.jobId);
    if (entry?.state === 'cancelled') {
      learnCancelled(relay, meta.jobId);
      throw new ImagineError('JOB_CANCELLED', 'the job was cancelled; stop it');
    }
  }
  if (meta.progress)
    relay.tracker.reportProgress(meta.jobId, {
      ...meta.progress,
      ...(preview ? { preview } : {}),
    });
  return { ok: true, jobId: meta.jobId, state: 'generating', duplicate: false };
}

/**
 * Record a job's start or end in the ledger unless it was cancelled (at another relay, or before
 * a restart): true when it was, and the tracker here learns it. Nothing to decide when the job
 * already ended here, or when there is no ledger; a ledger outage lets the push through.
 */
async function cancelledElsewhere(
  relay: FastifyInstance['relay'],
  meta: PushMeta,
  state: JobState,
  log: FastifyBaseLogger,
): Promise<boolean> {
  const known = relay.tracker.get(meta.jobId);
  if (known?.state === 'cancelled') return true;
  if (!relay.ledger || (known && isTerminal(known.state))) return false;
  // One relay and its own ledger: the tracker here already knows every cancel.
  if (!relay.fanout && known && state !== 'generating') return false;
  try {
    const decided = await relay.ledger.transition(
      ledgerEntryOf({
        jobId: meta.jobId,
        state,
        createdAt: meta.createdAt ?? known?.createdAt ?? Date.now(),
        platform: known?.platform,
        userId: known?.userId,
        seed: meta.seed,
        width: meta.width,
        height: meta.height,
        error: meta.error,
      }),
    );
    if (decided.applied || decided.previous?.state !== 'cancelled') return false;
  } catch (err) {
    log.warn({ err, jobId: meta.jobId }, 'job ledger unavailable; push taken as it is');
    return false;
  }
  learnCancelled(relay, meta.jobId);
  return true;
}

/** The tracker learns of a cancel another relay decided (which told chat and counted it). */
function learnCancelled(relay: FastifyInstance['relay'], jobId: string): void {
  if (relay.tracker.get(jobId))
    relay.tracker.apply(jobId, { state: 'cancelled' }, undefined, { remote: true });
  else relay.tracker.recall({ jobId, state: 'cancelled', createdAt: Date.now() });
}

/**
 * Act on a push once its body is parsed and it is authenticated (signed for this job): check its
 * images (size, type, structure, header), then record the progress or the state change against
 * the job's record, the ledger and a cancel, and answer as `POST /push` answers. Throws the coded
 * error the route answers with when the push is refused.
 */
export async function acceptPush(
  relay: FastifyInstance['relay'],
  push: ParsedPush,
  log: FastifyBaseLogger,
): Promise<PushAnswer> {
  const { meta } = push;
  const maxImage = relay.config.PUSH_MAX_BYTES;
  let images: BufferedImage[] | undefined;
  if (meta.status === 'done') {
    if (push.images.length === 0)
      throw new ImagineError('INVALID_PUSH', 'a "done" push needs a non-empty image');
    images = [];
    for (const [i, chunks] of push.images.entries()) {
      const described = meta.images?.[i];
      const which = push.images.length > 1 ? `image ${i + 1}` : 'image';
      const received = new BufferedImage(chunks, 'application/octet-stream');
      if (received.size === 0)
        throw new ImagineError('INVALID_PUSH', `a "done" push needs a non-empty ${which}`);
      if (received.size > maxImage)
        throw new ImagineError(
          'PAYLOAD_TOO_LARGE',
          `${which} is ${received.size} bytes; the limit is ${maxImage}`,
        );
      const sniffed = sniffImageType(received.head(16));
      if (!sniffed) throw new ImagineError('INVALID_PUSH', `${which} is not PNG, JPEG or WebP`);
      const claimed = described?.contentType ?? meta.contentType;
      if (claimed && claimed !== sniffed)
        throw new ImagineError('INVALID_PUSH', `meta says ${claimed} but ${which} is ${sniffed}`);
      // Magic bytes are not an image: walk every part's structure and decode its header
      // first. A PNG is walked, and kept, in the pieces it arrived in (they go out as
      // WebSocket fragments); JPEG and WebP are joined for the check and kept as that one piece.
      const whole = sniffed === 'image/png' ? received.chunks : [received.bytes];
      try {
        await checkImage(whole, sniffed);
      } catch (err) {
        if (push.images.length > 1 && err instanceof ImagineError)
          throw new ImagineError(err.code, `${which}: ${err.message}`, { cause: err });
        throw err;
      }
      images.push(
        new BufferedImage(
          whole,
          sniffed,
          described ?? { seed: meta.seed, width: meta.width, height: meta.height },
        ),
      );
    }
  } else if (push.images.length > 0) {
    throw new ImagineError('INVALID_PUSH', `a "${meta.status}" push carries no image`);
  }
  const preview = push.preview ? await previewOf(push.preview, meta) : undefined;

  if (meta.status === 'generating') {
    // A progress report or a worker asking after a running job: no state change.
    const answer = await runningPush(relay, meta, preview);
    if (answer) {
      relay.metrics.pushes.inc({ kind: answer.duplicate ? 'duplicate' : 'progress' });
      return answer;
    }
  }

  // Output safety `review`: each image marked so goes to the moderators, not to the user or the
  // buffer; the others are delivered. (The verdicts of pushed images come first, in part order.)
  const review = heldForReview(relay, meta, images);
  const held = review.error;
  // A push for a job that ended before a restart is a duplicate (a replay), not news.
  if (!relay.tracker.get(meta.jobId)) await recallJob(relay, meta.jobId);
  // The job's start, or its end, decided against a cancel that came in at another relay.
  const cancelled = await cancelledElsewhere(relay, meta, held ? 'failed' : meta.status, log);
  if (cancelled) {
    if (meta.status === 'generating')
      throw new ImagineError('JOB_CANCELLED', 'the job was cancelled; skip it');
    relay.metrics.pushes.inc({ kind: 'duplicate' });
    return { ok: true, jobId: meta.jobId, state: 'cancelled', duplicate: true };
  }
  const { duplicate, record } = relay.tracker.apply(
    meta.jobId,
    {
      state: held ? 'failed' : meta.status,
      seed: meta.seed,
      width: meta.width,
      height: meta.height,
      prompt: meta.prompt,
      task: meta.task,
      count: meta.count,
      steps: meta.steps,
      strength: meta.strength,
      model: meta.model,
      source: meta.source,
      generator: meta.generator,
      generationMs: meta.generationMs,
      createdAt: meta.createdAt,
      replyTarget: meta.replyTarget,
      error: held ?? meta.error,
      ...(meta.safety
        ? {
            spoilers: meta.safety.verdicts
              .filter((v) => isDelivered(v.action))
              .map((v) => v.action === 'spoiler'),
          }
        : {}),
      ...(meta.safety && meta.status === 'done' && !held
        ? { withheld: withheldOf(meta.safety.verdicts) }
        : {}),
    },
    held ? undefined : review.delivered,
  );
  if (!duplicate && meta.status === 'generating' && meta.progress)
    relay.tracker.reportProgress(meta.jobId, {
      ...meta.progress,
      ...(preview ? { preview } : {}),
    });
  if (!duplicate && meta.safety) recordSafety(relay, meta.jobId, meta.safety);
  if (!duplicate && review.target)
    for (const part of review.parts)
      void relay.reviews
        .hold(heldImageOf(meta, part, review, record.createdAt, review.target))
        .catch((err) => log.error({ err, jobId: meta.jobId }, 'could not hold for review'));
  log[meta.progress ? 'debug' : 'info'](
    {
      jobId: meta.jobId,
      status: meta.status,
      duplicate,
      legacy: push.legacy,
      images: images?.length,
    },
    'push',
  );
  relay.metrics.pushes.inc({
    kind: duplicate ? 'duplicate' : push.legacy ? 'legacy' : images ? 'image' : 'status',
  });
  if (!duplicate && meta.status === 'done') {
    relay.metrics.endToEnd.observe(
      { platform: record.platform ?? 'unknown' },
      Math.max(0, (Date.now() - record.createdAt) / 1000),
    );
    if (meta.generationMs !== undefined) relay.metrics.generation.observe(meta.generationMs / 1000);
  }
  return { ok: true, jobId: meta.jobId, state: record.state, duplicate };
}

export const pushRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const maxImage = relay.config.PUSH_MAX_BYTES;
  // Room for N images, the meta part and multipart framing, or one image in base64 (4/3 growth).
  const bodyLimit = Math.max(IMAGE_COUNT_MAX * maxImage, Math.ceil((maxImage * 4) / 3)) + 64 * 1024;

  // Pushes are authenticated from their headers before the body is read (push-auth.ts).
  const gate = createPushGate({
    secret: relay.config.RELAY_SECRET,
    bodyLimit,
    onRefused: () => relay.metrics.pushes.inc({ kind: 'rejected' }),
  });
  const authenticated = (request: FastifyRequest): PushAuth => {
    if (!request.pushAuth) throw new ImagineError('MISSING_SIGNATURE', 'the push is not signed');
    return request.pushAuth;
  };

  /** Settles a body parser once: a refusal stops reading (the rest is drained) and is counted. */
  const settleOnce = (
    payload: NodeJS.ReadableStream,
    done: (err: Error | null, body?: ParsedPush) => void,
  ) => {
    const finish = Object.assign(
      (err: unknown, value?: ParsedPush) => {
        if (finish.settled) return;
        finish.settled = true;
        if (err) {
          payload.removeAllListeners('data');
          payload.resume();
          relay.metrics.pushes.inc({ kind: 'rejected' });
          done(err as Error, undefined);
        } else done(null, value);
      },
      { settled: false },
    );
    return finish;
  };
  /** The meta header is covered by a v3 signature only, and only an octet-stream body has none. */
  const notV3 = (auth: PushAuth): PushAuth => {
    if (auth.meta !== undefined)
      throw new ImagineError(
        'INVALID_PUSH',
        'a v3-signed push is application/octet-stream (its meta is in X-Imagine-Meta)',
      );
    return auth;
  };

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('multipart/form-data', (request, payload, done) => {
    const finish = settleOnce(payload, done);
    try {
      const verifier = notV3(authenticated(request)).verifier;
      const splitter = createMultipartSplitter(header(request, 'content-type') ?? '', maxImage);
      let received = 0;
      payload.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > bodyLimit) {
          finish(new ImagineError('PAYLOAD_TOO_LARGE', `body is over the ${bodyLimit}-byte limit`));
          return;
        }
        verifier.update(chunk);
        splitter.write(chunk);
      });
      payload.on('error', (err) => finish(err));
      payload.on('end', () => {
        if (finish.settled) return;
        try {
          verifier.finish();
        } catch (err) {
          finish(err);
          return;
        }
        splitter.end().then(
          (parts) => {
            try {
              finish(null, parseMultipart(parts));
            } catch (err) {
              finish(err);
            }
          },
          (err) => finish(err),
        );
      });
    } catch (err) {
      finish(err);
    }
  });
  // The body is the images alone (no part framing to scan), hashed as it streams in; the meta
  // came signed in a header.
  app.addContentTypeParser('application/octet-stream', (request, payload, done) => {
    const finish = settleOnce(payload, done);
    try {
      const auth = authenticated(request);
      if (auth.meta === undefined)
        throw new ImagineError(
          'INVALID_PUSH',
          'an application/octet-stream push carries its meta in X-Imagine-Meta, signed with v3',
        );
      // v3 signs Content-Length: the body is exactly this long (the HTTP parser holds it to it).
      const length = auth.length ?? 0;
      const plan = octetPlan(auth.meta, length, maxImage);
      // Kept as the chunks they arrived in (no buffer to fill, nothing joined), each hashed.
      const chunks: Buffer[] = [];
      let received = 0;
      payload.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > length) {
          finish(new ImagineError('INVALID_PUSH', 'the body is longer than its Content-Length'));
          return;
        }
        chunks.push(chunk);
        auth.verifier.update(chunk);
      });
      payload.on('error', (err) => finish(err));
      payload.on('end', () => {
        if (finish.settled) return;
        try {
          if (received !== length)
            throw new ImagineError('INVALID_PUSH', 'the body is shorter than its Content-Length');
          auth.verifier.finish();
          const pieces = splitChunks(chunks, plan.parts);
          finish(
            null,
            plan.preview
              ? checkedParts(plan.meta, [], pieces[0])
              : checkedParts(plan.meta, pieces, undefined),
          );
        } catch (err) {
          finish(err);
        }
      });
    } catch (err) {
      finish(err);
    }
  });
  // The seed's JSON shape: small enough to buffer, then verify, then parse.
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer', bodyLimit },
    (request, body: Buffer, done) => {
      try {
        const { verifier } = notV3(authenticated(request));
        verifier.update(body);
        verifier.finish();
        done(null, parseLegacy(body));
      } catch (err) {
        relay.metrics.pushes.inc({ kind: 'rejected' });
        done(err as Error, undefined);
      }
    },
  );

  app.post('/push', { bodyLimit, preParsing: gate.preParsing }, async (request, reply) => {
    const push = request.body as ParsedPush | undefined;
    if (!push)
      throw new ImagineError(
        'UNSUPPORTED_MEDIA_TYPE',
        'send application/octet-stream, multipart/form-data or JSON',
      );
    const signedFor = authenticated(request).jobId;
    if (signedFor !== undefined && signedFor !== push.meta.jobId)
      throw new ImagineError('BAD_SIGNATURE', 'the push is signed for another job');
    return reply.status(200).send(await acceptPush(relay, push, request.log));
  });
};
