/**
 * Worker → relay: signed pushes. `application/octet-stream` (the image bytes alone, back to
 * back; the meta in the v3-signed `X-Imagine-Meta` header), or multipart (`meta` JSON part + one
 * `image` file part per image, in the order `meta.images` lists them; v2-signed) when the meta is
 * too long for a header. The body is hashed once per push, whatever the tries.
 * Transient failures (network, 5xx, 429) are retried with backoff; a 4xx is final.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERROR_CODES, type ErrorCode, ImagineError, isRetryable } from '../contracts/errors.ts';
import { extensionFor } from '../contracts/image-types.ts';
import {
  bodySha256,
  encodeMetaHeader,
  META_HEADER_MAX,
  type PushMeta,
  signOctetPushHeaders,
  signPushHeaders,
} from '../contracts/push.ts';

/** Options of one push. */
export interface PushOptions {
  /** Aborts the push (a progress push overtaken by the final one). */
  signal?: AbortSignal;
  /** Tries, overriding the pusher's own (a progress push gets one: the next one replaces it). */
  attempts?: number;
  /** A progress report's preview (`meta.preview` describes it), sent as the `preview` part. */
  preview?: Buffer;
}

/** Sends pushes to the relay. */
export interface RelayPusher {
  /**
   * Throws a coded error when the relay refuses (4xx: `JOB_CANCELLED` when the job was
   * cancelled) or cannot be reached after the tries.
   */
  push(
    meta: PushMeta,
    images?: Buffer | readonly Buffer[],
    opts?: PushOptions,
  ): Promise<{ duplicate: boolean }>;
}

/** Options of {@link createRelayPusher}. */
export interface RelayPusherOptions {
  relayUrl: string;
  secret: string;
  attempts?: number;
  fetch?: typeof fetch;
  /**
   * `octet-stream` (the default; multipart when the meta is too long for its header, and from
   * the first push a relay older than this form refused and then took as multipart), or always
   * `multipart`.
   */
  form?: 'octet-stream' | 'multipart';
}

/** A push body as sent, and, for an octet-stream push, its signed meta header. */
export interface EncodedPush {
  body: Buffer;
  contentType: string;
  /** `X-Imagine-Meta` (an octet-stream push, signed v3); absent for multipart (signed v2). */
  metaHeader?: string;
}

/**
 * Encode a push as `application/octet-stream`: the images (or a progress report's preview) back
 * to back as the body, unjoined when there is one, and the meta, with `parts` listing each one's
 * length when there are several, as the `X-Imagine-Meta` header. Undefined when the meta is too
 * long for the header (send it multipart).
 */
export function encodeOctetPush(
  meta: PushMeta,
  images?: Buffer | readonly Buffer[],
  preview?: Buffer,
): EncodedPush | undefined {
  const list = images === undefined ? [] : Buffer.isBuffer(images) ? [images] : images;
  // Images and a preview never travel together (the relay refuses that): multipart says why.
  if (preview && list.length > 0) return undefined;
  const parts = preview ? [preview] : list;
  const metaHeader = encodeMetaHeader(
    parts.length > 1 ? { ...meta, parts: parts.map((p) => p.length) } : meta,
  );
  if (metaHeader.length > META_HEADER_MAX) return undefined;
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return { body, contentType: 'application/octet-stream', metaHeader };
}

/** The headers that sign an encoded push now (v3 with its meta header, or v2). */
export function signEncodedPush(
  secret: string,
  meta: PushMeta,
  encoded: EncodedPush,
  sha256: string = bodySha256(encoded.body),
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Record<string, string> {
  return encoded.metaHeader === undefined
    ? {
        'content-type': encoded.contentType,
        ...signPushHeaders(secret, meta.jobId, encoded.body, nowSeconds, sha256),
      }
    : signOctetPushHeaders(secret, meta, encoded.body, nowSeconds, sha256, encoded.metaHeader);
}

/**
 * Encode a push body exactly as sent, so the signature covers the very bytes: a `meta` JSON
 * field and one `image` file part per image. Written out directly (one copy of each image)
 * because going through FormData → Request costs ~8 ms per MiB here.
 */
export function encodePush(
  meta: PushMeta,
  images?: Buffer | readonly Buffer[],
  preview?: Buffer,
): EncodedPush {
  const boundary = `imagine-${randomBytes(12).toString('hex')}`;
  const parts: Buffer[] = [
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="meta"\r\n` +
        `Content-Type: application/json\r\n\r\n${JSON.stringify(meta)}\r\n`,
    ),
  ];
  const list = images === undefined ? [] : Buffer.isBuffer(images) ? [images] : images;
  list.forEach((image, i) => {
    const type = meta.images?.[i]?.contentType ?? meta.contentType ?? 'image/png';
    const name = list.length > 1 ? `${meta.jobId}-${i + 1}` : meta.jobId;
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="image"; ` +
          `filename="${name}.${extensionFor(type)}"\r\nContent-Type: ${type}\r\n\r\n`,
      ),
      image,
      Buffer.from('\r\n'),
    );
  });
  if (preview) {
    const type = meta.preview?.contentType ?? 'image/jpeg';
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="preview"; ` +
          `filename="${meta.jobId}-preview.${extensionFor(type)}"\r\nContent-Type: ${type}\r\n\r\n`,
      ),
      preview,
      Buffer.from('\r\n'),
    );
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** Carries a relay's refusal out of {@link retryPush}: final, never tried again. */
export class PushRefused extends Error {
  readonly refusal: ImagineError;
  constructor(refusal: ImagineError) {
    super(refusal.message);
    this.refusal = refusal;
  }
}

/** Tries of a push the relay could not take, unless a pusher or a push says otherwise. */
export const PUSH_ATTEMPTS = 5;

/**
 * One push tried up to `tries` times, 400 ms doubling to 5 s between tries, however it travels
 * (signed HTTP, or in process). `once` answers or throws: a {@link PushRefused} is final (its
 * refusal is thrown); anything else is tried again, unless `signal` was aborted (then it is
 * thrown). After the last try: `DELIVERY_FAILED` saying `failure`, the last error as its cause.
 */
export async function retryPush<T>(
  tries: number,
  signal: AbortSignal | undefined,
  failure: string,
  once: () => Promise<T>,
): Promise<T> {
  let lastError: unknown;
  for (let attempt = 0; attempt < tries; attempt++) {
    if (attempt > 0) await sleep(Math.min(5000, 200 * 2 ** attempt), undefined, { signal });
    try {
      return await once();
    } catch (err) {
      if (err instanceof PushRefused) throw err.refusal;
      if (signal?.aborted) throw err;
      lastError = err;
    }
  }
  throw new ImagineError('DELIVERY_FAILED', failure, { cause: lastError });
}

/** The relay's own code for a refusal (`PAYLOAD_TOO_LARGE`, ...), or `INVALID_PUSH`. */
function refusalCode(text: string): ErrorCode {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    if (
      typeof code === 'string' &&
      code in ERROR_CODES &&
      !isRetryable(new ImagineError(code as ErrorCode, ''))
    )
      return code as ErrorCode;
  } catch {
    // not JSON: a proxy's page
  }
  return 'INVALID_PUSH';
}

/** Build a pusher for one relay. */
export function createRelayPusher(opts: RelayPusherOptions): RelayPusher {
  const doFetch = opts.fetch ?? fetch;
  const url = new URL('/push', opts.relayUrl).toString();
  const attempts = opts.attempts ?? PUSH_ATTEMPTS;
  // Set once a relay refused the octet-stream form and took the same push as multipart.
  let multipartOnly = opts.form === 'multipart';

  /** Send one encoded push, retrying transient failures; a refusal (4xx) is final. */
  async function send(
    meta: PushMeta,
    encoded: EncodedPush,
    tries: number,
    signal: AbortSignal | undefined,
  ): Promise<{ duplicate: boolean }> {
    const { body } = encoded;
    // Hashed once; each try signs the hash with its own timestamp.
    const sha256 = bodySha256(body);
    return retryPush(tries, signal, 'relay cannot be reached', async () => {
      // Signed in the headers (v3 or v2): the relay authenticates the push before its body.
      const signed = signEncodedPush(opts.secret, meta, encoded, sha256);
      const response = await doFetch(url, {
        method: 'POST',
        headers: signed,
        body: body as Uint8Array<ArrayBuffer>,
        ...(signal ? { signal } : {}),
      });
      const text = await response.text();
      if (response.ok)
        return { duplicate: Boolean((JSON.parse(text) as { duplicate?: boolean }).duplicate) };
      const transient = response.status >= 500 || response.status === 429;
      const answered = new ImagineError(
        transient ? 'DELIVERY_FAILED' : refusalCode(text),
        `relay answered HTTP ${response.status}: ${text.slice(0, 300)}`,
      );
      // A refusal (4xx) is final: the caller tells the user instead.
      throw transient ? answered : new PushRefused(answered);
    });
  }

  return {
    async push(meta, images, pushOpts = {}) {
      const { signal } = pushOpts;
      const tries = pushOpts.attempts ?? attempts;
      const octet = multipartOnly ? undefined : encodeOctetPush(meta, images, pushOpts.preview);
      if (octet) {
        try {
          return await send(meta, octet, tries, signal);
        } catch (err) {
          // A relay from before the octet-stream push refuses its v3 signature (401) or its
          // content type (415): the same push again as multipart, and multipart from then on.
          if (!(err instanceof ImagineError && OLD_RELAY_REFUSALS.has(err.code))) throw err;
          const answer = await send(
            meta,
            encodePush(meta, images, pushOpts.preview),
            tries,
            signal,
          );
          multipartOnly = true;
          return answer;
        }
      }
      return send(meta, encodePush(meta, images, pushOpts.preview), tries, signal);
    },
  };
}

/** How a relay older than the octet-stream push answers one. */
const OLD_RELAY_REFUSALS: ReadonlySet<ErrorCode> = new Set([
  'BAD_SIGNATURE',
  'MISSING_SIGNATURE',
  'UNSUPPORTED_MEDIA_TYPE',
]);
