/**
 * One registry of coded errors shared by every part. The wire shape is
 * `{ "error": { "code", "message" } }`; tests assert on `code`, never on message text.
 */

/** Every error code imagine puts on the wire, with the HTTP status it maps to. */
export const ERROR_CODES = {
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  INVALID_PROMPT: 400,
  INVALID_PARAMETERS: 400,
  INVALID_JOB_ID: 400,
  INVALID_PUSH: 400,
  BAD_SIGNATURE: 401,
  STALE_SIGNATURE: 401,
  MISSING_SIGNATURE: 401,
  FORBIDDEN: 403,
  ORIGIN_NOT_ALLOWED: 403,
  NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  NOT_READY: 409,
  /** The job was cancelled: a worker skips it (queued) or stops it (running). */
  JOB_CANCELLED: 409,
  /** A cancel arrived after the job had ended: nothing was changed. */
  ALREADY_FINISHED: 409,
  JOB_FAILED: 409,
  JOB_EXPIRED: 410,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  BLOCKED_CONTENT: 422,
  /** The scope's output-safety setting blocked the generated image. */
  SAFETY_BLOCKED: 422,
  /** The image awaits a moderator's review (output safety `review`). */
  SAFETY_HELD: 202,
  CHANNEL_NOT_ALLOWED: 403,
  RATE_LIMITED: 429,
  QUEUE_FULL: 503,
  QUEUE_UNAVAILABLE: 503,
  GENERATOR_AUTH: 502,
  GENERATOR_TIMEOUT: 504,
  GENERATOR_BAD_RESPONSE: 502,
  GENERATOR_TOO_LARGE: 502,
  GENERATOR_UNAVAILABLE: 503,
  /** The backend refused the request itself (a bad workflow, an input it rejects): no retry. */
  GENERATOR_REJECTED: 502,
  GENERATION_FAILED: 500,
  /** The safety classifier could not judge the image (it is then not delivered). */
  SAFETY_CHECK_FAILED: 500,
  DELIVERY_FAILED: 502,
  /** Input images (vary, upscale): each refusal of the fetcher has its own code. */
  INPUT_NOT_ALLOWED: 400,
  INPUT_INSECURE: 400,
  INPUT_REDIRECT: 400,
  INPUT_TOO_LARGE: 413,
  INPUT_NOT_IMAGE: 415,
  INPUT_NOT_FOUND: 404,
  INPUT_EXPIRED: 410,
  INPUT_UNAVAILABLE: 503,
  INTERNAL: 500,
} as const;

/** A code from {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Where an images-per-window limit stands, on the `RATE_LIMITED` refusal it caused: whose count
 * (`user`: the requester's own, on the web page its address's; `scope`: the whole server,
 * workspace or site), the limit, how many images are left now, the window, and when it starts
 * again with the whole limit.
 */
export interface Quota {
  of: 'user' | 'scope';
  limit: number;
  remaining: number;
  windowSeconds: number;
  resetSeconds: number;
}

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; retryAfterSeconds?: number; quota?: Quota };
}

/** An error with a stable code; `cause` is kept for logs. */
export class ImagineError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds: number | undefined;
  /** The images-per-window limit a `RATE_LIMITED` refusal is about, when it is one. */
  readonly quota: Quota | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; retryAfterSeconds?: number; quota?: Quota } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ImagineError';
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.quota = options.quota;
  }

  /** The HTTP status this error maps to. */
  get statusCode(): number {
    return ERROR_CODES[this.code];
  }

  /** The wire shape. */
  toBody(): ErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.retryAfterSeconds === undefined
          ? {}
          : { retryAfterSeconds: this.retryAfterSeconds }),
        ...(this.quota === undefined ? {} : { quota: this.quota }),
      },
    };
  }
}

/** Wrap anything thrown into an {@link ImagineError}, keeping coded errors as they are. */
export function asImagineError(err: unknown, fallback: ErrorCode = 'INTERNAL'): ImagineError {
  if (err instanceof ImagineError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ImagineError(fallback, message, { cause: err });
}

const RETRYABLE: ReadonlySet<ErrorCode> = new Set([
  'GENERATOR_TIMEOUT',
  'GENERATOR_UNAVAILABLE',
  'QUEUE_UNAVAILABLE',
  'DELIVERY_FAILED',
  'INPUT_UNAVAILABLE',
]);

/** The one place that decides whether a failed job is worth another attempt. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof ImagineError) return RETRYABLE.has(err.code);
  // Network-level failures (ECONNRESET, fetch failed) are transient by nature.
  if (err instanceof TypeError && /fetch failed/i.test(err.message)) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' && /^(ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|EAI_AGAIN)$/.test(code)
  );
}
