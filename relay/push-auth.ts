/**
 * Who may send `/push` bytes, decided from the headers before the body is read. A v2 push is
 * authenticated by its header signature (timestamp, job id, declared length, body hash) at once,
 * a v3 push likewise with its `X-Imagine-Meta` header covered too;
 * a stranger is answered 401 and disconnected without a byte of body accepted. A v1 push (old
 * workers) is signed over the body, so it is unauthenticated until it ends: at most
 * `LEGACY_PUSHES_IN_FLIGHT` of them are read at once, which bounds what strangers can make the
 * relay hold to that many bodies (and the request timeout cuts slow ones).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ImagineError } from '../contracts/errors.ts';
import { header } from '../contracts/headers.ts';
import {
  CONTENT_SHA256_HEADER,
  createPushVerifier,
  JOB_ID_HEADER,
  META_HEADER,
  type PushVerifier,
  SIGNATURE_HEADER,
  signatureScheme,
  TIMESTAMP_HEADER,
  verifyPushHeaders,
} from '../contracts/push.ts';

/** v1 pushes read at once (each up to the push body limit, unauthenticated until its end). */
export const LEGACY_PUSHES_IN_FLIGHT = 4;

/** How a push was authenticated, and the check of its body. */
export interface PushAuth {
  scheme: 'v1' | 'v2' | 'v3';
  /** Fed every body chunk; `finish()` throws unless the body is what was signed. */
  verifier: PushVerifier;
  /** v2, v3: the job id the signature covers (the body's meta must name the same job). */
  jobId?: string;
  /** v2, v3: the body length the signature covers (Content-Length). */
  length?: number;
  /** v3: `X-Imagine-Meta` as sent, which the signature covers. */
  meta?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    pushAuth?: PushAuth;
  }
}

/** Build the gate for one relay: a `preParsing` hook and the count of v1 pushes in flight. */
export function createPushGate(opts: {
  secret: string;
  bodyLimit: number;
  onRefused: () => void;
  legacyInFlight?: number;
}) {
  const legacyLimit = opts.legacyInFlight ?? LEGACY_PUSHES_IN_FLIGHT;
  let legacy = 0;

  const admit = (request: FastifyRequest, reply: FastifyReply): PushAuth => {
    const declared = request.headers['content-length'];
    const length = declared === undefined ? undefined : Number(declared);
    if (length !== undefined && length > opts.bodyLimit)
      throw new ImagineError(
        'PAYLOAD_TOO_LARGE',
        `body is ${length} bytes; the limit is ${opts.bodyLimit}`,
      );
    const signature = header(request, SIGNATURE_HEADER);
    const timestamp = header(request, TIMESTAMP_HEADER);
    const scheme = signatureScheme(signature);
    if (scheme === 'v2' || scheme === 'v3') {
      const verifier = verifyPushHeaders(opts.secret, {
        timestamp,
        signature,
        jobId: header(request, JOB_ID_HEADER),
        sha256: header(request, CONTENT_SHA256_HEADER)?.toLowerCase(),
        length,
        // An empty header is no meta.
        meta: header(request, META_HEADER) || undefined,
      });
      return {
        scheme,
        verifier,
        jobId: verifier.jobId,
        ...(length === undefined ? {} : { length }),
        ...(verifier.meta === undefined ? {} : { meta: verifier.meta }),
      };
    }
    // v1: the headers are checked now (missing, malformed or stale → 401), the body at its end.
    const verifier = createPushVerifier(opts.secret, timestamp, signature);
    if (legacy >= legacyLimit)
      throw new ImagineError(
        'RATE_LIMITED',
        'too many body-signed (v1) pushes in flight; retry, or sign pushes with v2',
        { retryAfterSeconds: 1 },
      );
    legacy++;
    let released = false;
    reply.raw.once('close', () => {
      if (released) return;
      released = true;
      legacy--;
    });
    return { scheme: 'v1', verifier };
  };

  return {
    /** `preParsing` hook of `POST /push`: refuse before a byte of the body is accepted. */
    preParsing: async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        request.pushAuth = admit(request, reply);
      } catch (err) {
        opts.onRefused();
        // The body is never read: close the connection after the answer instead of draining it.
        reply.header('connection', 'close');
        throw err;
      }
    },
    /** v1 pushes being read right now. */
    get legacyInFlight(): number {
      return legacy;
    },
  };
}
