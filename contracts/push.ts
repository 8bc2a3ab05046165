/**
 * The worker → relay push contract: how results and status changes are signed and shaped.
 *
 * v2 (workers sign this): `X-Imagine-Timestamp: <unix seconds>`, `X-Imagine-Job-Id`,
 * `X-Imagine-Content-SHA256: <hex SHA-256 of the body>`, `Content-Length`, and
 * `X-Imagine-Signature: v2=<hex HMAC-SHA256(secret, "v2:" + timestamp + ":" + jobId + ":" +
 * length + ":" + sha256)>`: checked before the relay reads the body, the hash at its end.
 * v1 (workers written before v2): `X-Imagine-Signature: v1=<hex HMAC-SHA256(secret, "v1:" +
 * timestamp + ":" + raw body)>`, checked only once the whole body is in.
 * v3 (an `application/octet-stream` push: the body is the image bytes alone, the meta travels in
 * `X-Imagine-Meta: <base64url of the meta JSON>`): v2's headers, and `X-Imagine-Signature:
 * v3=<hex HMAC-SHA256(secret, "v3:" + timestamp + ":" + jobId + ":" + length + ":" + sha256 +
 * ":" + X-Imagine-Meta)>`, so the meta is authenticated with the rest before the body is read.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ImagineError } from './errors.ts';
import { IMAGE_TYPES } from './image-types.ts';
import { IMAGE_COUNT_MAX, JOB_ID_PATTERN, JOB_TASKS, ModelNameSchema } from './job.ts';
import { PushSafetySchema } from './safety.ts';

/** Header carrying the signing time, unix seconds. */
export const TIMESTAMP_HEADER = 'x-imagine-timestamp';
/** Header carrying `v1=<hex>`. */
export const SIGNATURE_HEADER = 'x-imagine-signature';
/** How far a signature's timestamp may be from the relay's clock. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/** Sign a raw push body. `now` is a parameter so windows are testable. */
export function signPush(
  secret: string,
  body: Uint8Array | string,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): { timestamp: string; signature: string } {
  const timestamp = String(nowSeconds);
  const mac = createHmac('sha256', secret).update(`v1:${timestamp}:`).update(body).digest('hex');
  return { timestamp, signature: `v1=${mac}` };
}

/** Checks a push signature over a body fed in chunks, as it arrives. */
export interface PushVerifier {
  update(chunk: Uint8Array): void;
  /** Throws `BAD_SIGNATURE` when the body does not match. */
  finish(): void;
}

/**
 * Start verifying a push: the headers are checked at once (missing, malformed or stale → a
 * coded 401 before any body is read), the body as it streams in.
 */
export function createPushVerifier(
  secret: string,
  timestamp: string | undefined,
  signature: string | undefined,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): PushVerifier {
  if (!timestamp || !signature)
    throw new ImagineError(
      'MISSING_SIGNATURE',
      'X-Imagine-Timestamp and X-Imagine-Signature are required',
    );
  if (!/^\d{1,12}$/.test(timestamp))
    throw new ImagineError('BAD_SIGNATURE', 'X-Imagine-Timestamp must be unix seconds');
  if (Math.abs(nowSeconds - Number(timestamp)) > SIGNATURE_TOLERANCE_SECONDS)
    throw new ImagineError('STALE_SIGNATURE', 'signature timestamp is outside the 300 s window');
  const match = /^v1=([0-9a-f]{64})$/.exec(signature.trim());
  if (!match) throw new ImagineError('BAD_SIGNATURE', 'signature must be v1=<64 hex digits>');
  const given = Buffer.from(match[1]!, 'hex');
  const mac = createHmac('sha256', secret).update(`v1:${timestamp}:`);
  return {
    update: (chunk) => {
      mac.update(chunk);
    },
    finish: () => {
      if (!timingSafeEqual(mac.digest(), given))
        throw new ImagineError('BAD_SIGNATURE', 'signature does not match');
    },
  };
}

/** Verify a push signature over a whole body; throws a coded 401 error on any failure. */
export function verifyPush(
  secret: string,
  body: Uint8Array | string,
  timestamp: string | undefined,
  signature: string | undefined,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): void {
  const verifier = createPushVerifier(secret, timestamp, signature, nowSeconds);
  verifier.update(typeof body === 'string' ? Buffer.from(body) : body);
  verifier.finish();
}

/** Header naming the job a v2-signed push is about. */
export const JOB_ID_HEADER = 'x-imagine-job-id';
/** Header carrying the hex SHA-256 of a v2-signed push body. */
export const CONTENT_SHA256_HEADER = 'x-imagine-content-sha256';

/** Header carrying a v3 push's meta: the base64url of its JSON. */
export const META_HEADER = 'x-imagine-meta';
/** Longest `X-Imagine-Meta` (base64url characters); a push with a bigger meta goes multipart. */
export const META_HEADER_MAX = 8192;

/**
 * What a v2 signature covers: everything the relay can check before reading the body; v3 adds
 * the meta header.
 */
function headerPayload(
  timestamp: string,
  jobId: string,
  length: number,
  sha256: string,
  meta?: string,
): string {
  return meta === undefined
    ? `v2:${timestamp}:${jobId}:${length}:${sha256}`
    : `v3:${timestamp}:${jobId}:${length}:${sha256}:${meta}`;
}

/** Hex SHA-256 of a push body: computed once per push, whatever the tries. */
export function bodySha256(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('hex');
}

/**
 * Sign a push in its headers (v2): HMAC-SHA256 over timestamp, job id, body length and the
 * body's SHA-256. The relay checks it before accepting a byte of the body, then the hash as the
 * body streams in. Returns the headers to send (with `content-length`). `sha256`: the body's
 * hash when already known ({@link bodySha256}).
 */
export function signPushHeaders(
  secret: string,
  jobId: string,
  body: Uint8Array,
  nowSeconds: number = Math.floor(Date.now() / 1000),
  sha256: string = bodySha256(body),
): Record<string, string> {
  return signedHeaders(secret, jobId, body.length, sha256, nowSeconds);
}

/** The meta as `X-Imagine-Meta` carries it (base64url of its JSON). */
export function encodeMetaHeader(meta: PushMeta): string {
  return Buffer.from(JSON.stringify(meta)).toString('base64url');
}

/**
 * Sign an `application/octet-stream` push (v3): v2's fields and the `X-Imagine-Meta` header,
 * so the meta is checked with them before the body is read. Returns the headers to send.
 * `metaHeader`: the header as it will be sent, when already encoded.
 */
export function signOctetPushHeaders(
  secret: string,
  meta: PushMeta,
  body: Uint8Array,
  nowSeconds: number = Math.floor(Date.now() / 1000),
  sha256: string = bodySha256(body),
  metaHeader: string = encodeMetaHeader(meta),
): Record<string, string> {
  return {
    ...signedHeaders(secret, meta.jobId, body.length, sha256, nowSeconds, metaHeader),
    [META_HEADER]: metaHeader,
    'content-type': 'application/octet-stream',
  };
}

function signedHeaders(
  secret: string,
  jobId: string,
  length: number,
  sha256: string,
  nowSeconds: number,
  meta?: string,
): Record<string, string> {
  const timestamp = String(nowSeconds);
  const mac = createHmac('sha256', secret)
    .update(headerPayload(timestamp, jobId, length, sha256, meta))
    .digest('hex');
  return {
    [TIMESTAMP_HEADER]: timestamp,
    [SIGNATURE_HEADER]: `${meta === undefined ? 'v2' : 'v3'}=${mac}`,
    [JOB_ID_HEADER]: jobId,
    [CONTENT_SHA256_HEADER]: sha256,
    'content-length': String(length),
  };
}

/** The headers of a push, as the relay read them. */
export interface PushHeaders {
  timestamp: string | undefined;
  signature: string | undefined;
  jobId: string | undefined;
  sha256: string | undefined;
  /** The declared body length (Content-Length), when there is one. */
  length: number | undefined;
  /** `X-Imagine-Meta` (v3), as sent. */
  meta?: string | undefined;
}

/**
 * Which scheme a push's signature header uses (`v1` covers the body, `v2` the headers, `v3` the
 * headers with the meta).
 */
export function signatureScheme(signature: string | undefined): 'v1' | 'v2' | 'v3' | undefined {
  const s = signature?.trim();
  return s?.startsWith('v2=')
    ? 'v2'
    : s?.startsWith('v3=')
      ? 'v3'
      : s?.startsWith('v1=')
        ? 'v1'
        : undefined;
}

/**
 * Check a v2 or v3 push's headers before its body is read (missing, stale or wrong → a coded
 * 401), and return the verifier of the body's hash, fed as the body streams in.
 */
export function verifyPushHeaders(
  secret: string,
  h: PushHeaders,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): PushVerifier & { jobId: string; meta?: string } {
  if (!h.timestamp || !h.signature)
    throw new ImagineError(
      'MISSING_SIGNATURE',
      'X-Imagine-Timestamp and X-Imagine-Signature are required',
    );
  if (!h.jobId || !h.sha256 || h.length === undefined)
    throw new ImagineError(
      'MISSING_SIGNATURE',
      'a v2 signature needs X-Imagine-Job-Id, X-Imagine-Content-SHA256 and Content-Length',
    );
  const v3 = signatureScheme(h.signature) === 'v3';
  if (v3 && h.meta === undefined)
    throw new ImagineError('MISSING_SIGNATURE', 'a v3 signature needs X-Imagine-Meta');
  if (!/^\d{1,12}$/.test(h.timestamp))
    throw new ImagineError('BAD_SIGNATURE', 'X-Imagine-Timestamp must be unix seconds');
  if (Math.abs(nowSeconds - Number(h.timestamp)) > SIGNATURE_TOLERANCE_SECONDS)
    throw new ImagineError('STALE_SIGNATURE', 'signature timestamp is outside the 300 s window');
  const match = /^v[23]=([0-9a-f]{64})$/.exec(h.signature.trim());
  if (!match)
    throw new ImagineError(
      'BAD_SIGNATURE',
      `signature must be ${v3 ? 'v3' : 'v2'}=<64 hex digits>`,
    );
  if (!JOB_ID_PATTERN.test(h.jobId) || !/^[0-9a-f]{64}$/.test(h.sha256))
    throw new ImagineError(
      'BAD_SIGNATURE',
      'X-Imagine-Job-Id or X-Imagine-Content-SHA256 is malformed',
    );
  const meta = v3 ? h.meta : undefined;
  const expected = createHmac('sha256', secret)
    .update(headerPayload(h.timestamp, h.jobId, h.length, h.sha256, meta))
    .digest();
  if (!timingSafeEqual(expected, Buffer.from(match[1]!, 'hex')))
    throw new ImagineError('BAD_SIGNATURE', 'signature does not match');
  const want = Buffer.from(h.sha256, 'hex');
  const hash = createHash('sha256');
  let seen = 0;
  return {
    jobId: h.jobId,
    ...(meta === undefined ? {} : { meta }),
    update: (chunk) => {
      seen += chunk.length;
      hash.update(chunk);
    },
    finish: () => {
      if (seen !== h.length || !timingSafeEqual(hash.digest(), want))
        throw new ImagineError('BAD_SIGNATURE', 'the body does not match its signed hash');
    },
  };
}

/**
 * The states a job moves through. `cancelled` is final like `done`, `failed` and `expired`: the
 * requester (or a moderator) stopped it; the relay decides it, a worker never pushes it.
 */
export const JOB_STATES = [
  'queued',
  'generating',
  'done',
  'failed',
  'expired',
  'cancelled',
] as const;
/** A job's state. */
export type JobState = (typeof JOB_STATES)[number];
/** The final states. */
export const TERMINAL_STATES = [
  'done',
  'failed',
  'expired',
  'cancelled',
] as const satisfies readonly JobState[];
/** A final state. */
export type TerminalState = (typeof TERMINAL_STATES)[number];

const TERMINAL: ReadonlySet<JobState> = new Set(TERMINAL_STATES);

/** Whether a state is final. */
export function isTerminal(state: JobState): boolean {
  return TERMINAL.has(state);
}

/** One image of a push, described in `meta.images` in the order of the `image` parts. */
export const PushImageSchema = z
  .object({
    contentType: z.enum(IMAGE_TYPES),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1),
    width: z.number().int().positive().max(16384),
    height: z.number().int().positive().max(16384),
  })
  .strict();
/** One image of a push. */
export type PushImage = z.infer<typeof PushImageSchema>;

/** What a result was made from: a vary's or upscale's source image (no reference, no bytes). */
export const PushSourceSchema = z
  .object({
    jobId: z.string().regex(JOB_ID_PATTERN).optional(),
    index: z
      .number()
      .int()
      .min(0)
      .max(IMAGE_COUNT_MAX - 1)
      .optional(),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1)
      .optional(),
    width: z.number().int().positive().optional(),
    height: z.number().int().positive().optional(),
  })
  .strict();
/** What a result was made from. */
export type PushSource = z.infer<typeof PushSourceSchema>;

/**
 * A `generating` push's progress report: step `step` of `steps` over the whole generator call
 * (every image of it), as the generator reported it. The worker sends these coalesced (latest
 * wins, one in flight per job, at most every PROGRESS_PUSH_MS); a `generating` push without it
 * is the worker asking whether the job was cancelled (the relay answers 409 `JOB_CANCELLED`).
 */
export const PushProgressSchema = z
  .object({
    step: z.number().int().min(0).max(1_000_000),
    steps: z.number().int().min(1).max(1_000_000),
  })
  .strict()
  .refine((p) => p.step <= p.steps, { message: 'progress.step is past progress.steps' });
/** A progress report. */
export type PushProgress = z.infer<typeof PushProgressSchema>;

/** Describes the one `preview` file part of a progress report (at most 64 KiB). */
export const PushPreviewSchema = z
  .object({
    contentType: z.enum(IMAGE_TYPES),
    width: z.number().int().positive().max(16384).optional(),
    height: z.number().int().positive().max(16384).optional(),
  })
  .strict();
/** A preview's description. */
export type PushPreview = z.infer<typeof PushPreviewSchema>;

/**
 * The `meta` part of a multipart push. A `done` push carries its images as file parts named
 * `image`, in order, and `images` describes each (seed, size, type) in the same order. A push
 * without `images` is the single-image shape: one `image` part described by the top-level
 * `contentType`/`seed`/`width`/`height` (workers written before the creative loop).
 * `task`, `count`, `steps`, `strength` and `source` echo the job, so a relay that learns the
 * job from its push (after a restart) can still offer buttons that re-create it.
 */
export const PushMetaSchema = z.object({
  jobId: z.string().regex(JOB_ID_PATTERN),
  status: z.enum(['generating', 'done', 'failed', 'expired']),
  contentType: z.enum(IMAGE_TYPES).optional(),
  /** The job's base seed (image i has `(seed + i) mod 2^32`). */
  seed: z.number().int().min(0).optional(),
  /** Size of each output image. */
  width: z.number().int().positive().optional(),
  height: z.number().int().positive().optional(),
  task: z.enum(JOB_TASKS).optional(),
  count: z.number().int().min(1).max(IMAGE_COUNT_MAX).optional(),
  steps: z.number().int().min(1).max(50).optional(),
  strength: z.number().gt(0).max(1).optional(),
  /** The model the job asked for, when it named one (Retry asks for it again). */
  model: ModelNameSchema.optional(),
  source: PushSourceSchema.optional(),
  images: z.array(PushImageSchema).min(1).max(IMAGE_COUNT_MAX).optional(),
  prompt: z.string().max(4000).optional(),
  generator: z.string().max(100).optional(),
  /** Milliseconds the generator took. */
  generationMs: z.number().nonnegative().optional(),
  createdAt: z.number().int().positive().optional(),
  replyTarget: z.string().max(8192).optional(),
  error: z.object({ code: z.string().max(100), message: z.string().max(2000) }).optional(),
  /** Output safety: a verdict for every image made; only delivered ones are image parts. */
  safety: PushSafetySchema.optional(),
  /** `generating` only: how far the generator has got. */
  progress: PushProgressSchema.optional(),
  /** `generating` with `progress` only: describes the one `preview` part. */
  preview: PushPreviewSchema.optional(),
  /**
   * An `application/octet-stream` push only: the byte length of each part its body holds back
   * to back (the images in order, or the preview); without it the body is one part.
   */
  parts: z.array(z.number().int().nonnegative()).min(1).max(IMAGE_COUNT_MAX).optional(),
});
/** The `meta` part of a multipart push. */
export type PushMeta = z.infer<typeof PushMetaSchema>;

/** The push shape of workers written against the seed: JSON with a base64 image. */
export const LegacyPushSchema = z.object({
  job_id: z.string().regex(JOB_ID_PATTERN),
  image: z.string().min(1),
});
