/**
 * HTTP plumbing shared by the adapters of GPU servers people already run (A1111, ComfyUI,
 * Replicate): one place that turns a backend's transport failures and HTTP statuses into coded
 * errors, so `isRetryable` is right for every adapter alike, and reads answers under a byte cap.
 */
import sharp from 'sharp';
import { ImagineError } from '../../contracts/errors.ts';
import { type ImageType, sniffImageType } from '../../contracts/image-types.ts';

/** What every backend call needs to know. */
export interface BackendCallOptions {
  /** Backend name, for messages ("a1111 at http://gpu:7860"). */
  backend: string;
  /** The job's cancel signal. */
  signal: AbortSignal;
  /** The per-call deadline signal (`AbortSignal.timeout`). */
  deadline: AbortSignal;
  deadlineMs: number;
  fetch: typeof fetch;
}

/** The error a call ends with when the job's own signal aborted it. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * `fetch` with both signals; a refused or dropped connection is `GENERATOR_UNAVAILABLE`
 * (retryable), the deadline is `GENERATOR_TIMEOUT`, the job's own abort is rethrown as it is.
 */
export async function backendFetch(
  url: string,
  init: RequestInit,
  opts: BackendCallOptions,
): Promise<Response> {
  opts.signal.throwIfAborted();
  try {
    return await opts.fetch(url, {
      ...init,
      signal: AbortSignal.any([opts.signal, opts.deadline]),
      redirect: 'error',
    });
  } catch (err) {
    throw transportError(err, opts);
  }
}

/** Classify an error thrown while talking to a backend (fetch, body reads, sockets). */
export function transportError(err: unknown, opts: BackendCallOptions): unknown {
  if (err instanceof ImagineError) return err;
  if (opts.signal.aborted) return abortReason(opts.signal);
  if (opts.deadline.aborted)
    return new ImagineError(
      'GENERATOR_TIMEOUT',
      `${opts.backend} did not answer within ${opts.deadlineMs} ms`,
      { cause: err },
    );
  return new ImagineError('GENERATOR_UNAVAILABLE', `${opts.backend} cannot be reached`, {
    cause: err,
  });
}

function retryAfterSeconds(response: Response): number | undefined {
  const header = response.headers.get('retry-after');
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - Date.now()) / 1000)) : undefined;
}

/**
 * Throw the coded error for a non-2xx answer: 401/403 `GENERATOR_AUTH`; 408, 429 and 5xx
 * `GENERATOR_UNAVAILABLE` (retryable; `Retry-After` kept); any other 4xx `GENERATOR_REJECTED`
 * (the backend refused this very request, so another try would fail the same way).
 * `describe` turns the backend's own error body into a short reason.
 */
export async function failUnlessOk(
  response: Response,
  opts: BackendCallOptions & { what: string; authHint: string; maxErrorBytes?: number },
  describe: (body: string) => string | undefined = (body) => body,
): Promise<void> {
  if (response.ok) return;
  const body = await readText(response, opts.maxErrorBytes ?? 64 * 1024, opts).catch(() => '');
  const reason = (describe(body) ?? body).replace(/\s+/g, ' ').trim().slice(0, 300);
  const where = `${opts.backend} answered HTTP ${response.status} to ${opts.what}`;
  const message = reason ? `${where}: ${reason}` : where;
  if (response.status === 401 || response.status === 403)
    throw new ImagineError('GENERATOR_AUTH', `${message}; ${opts.authHint}`);
  if (response.status === 408 || response.status === 429 || response.status >= 500) {
    const after = retryAfterSeconds(response);
    throw new ImagineError(
      'GENERATOR_UNAVAILABLE',
      message,
      after === undefined ? {} : { retryAfterSeconds: after },
    );
  }
  throw new ImagineError('GENERATOR_REJECTED', message);
}

/** Read a body under a byte cap (the declared length is checked first); over it: `GENERATOR_TOO_LARGE`. */
export async function readCapped(
  response: Response,
  maxBytes: number,
  opts: BackendCallOptions,
): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw new ImagineError(
      'GENERATOR_TOO_LARGE',
      `${opts.backend} answered ${declared} bytes; the limit is ${maxBytes}`,
    );
  }
  if (!response.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of response.body) {
      total += chunk.length;
      if (total > maxBytes) {
        await response.body.cancel().catch(() => {});
        throw new ImagineError(
          'GENERATOR_TOO_LARGE',
          `${opts.backend} answered over ${maxBytes} bytes`,
        );
      }
      chunks.push(Buffer.from(chunk));
    }
  } catch (err) {
    throw transportError(err, opts);
  }
  return Buffer.concat(chunks, total);
}

/** Read a capped body as UTF-8 text. */
export async function readText(
  response: Response,
  maxBytes: number,
  opts: BackendCallOptions,
): Promise<string> {
  return (await readCapped(response, maxBytes, opts)).toString('utf8');
}

/** Read a capped JSON body; anything that is not JSON is `GENERATOR_BAD_RESPONSE`. */
export async function readJson(
  response: Response,
  maxBytes: number,
  opts: BackendCallOptions & { what: string },
): Promise<unknown> {
  const text = await readText(response, maxBytes, opts);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ImagineError(
      'GENERATOR_BAD_RESPONSE',
      `${opts.backend} answered ${opts.what} with something that is not JSON`,
      { cause: err },
    );
  }
}

/** Wait `ms`, or reject with the abort reason as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One call at a time, in order, each waiter leaving the line when its signal aborts. For servers
 * that run one generation at a time and whose progress and interrupt are global (A1111).
 */
export class OneAtATime {
  private tail: Promise<void> = Promise.resolve();

  /** Run `fn` once every earlier call has settled. */
  async run<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const before = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      await Promise.race([
        before,
        new Promise<never>((_, reject) => {
          if (signal.aborted) reject(abortReason(signal));
          signal.addEventListener('abort', () => reject(abortReason(signal)), { once: true });
        }),
      ]);
      return await fn();
    } finally {
      // A waiter that left early must still keep the order for those behind it.
      before.then(release, release);
    }
  }
}

/**
 * Check that a backend served an image we can deliver: its type from its magic bytes and its
 * size from decoding it (sharp), so a PNG header followed by garbage is refused here.
 */
export async function servedImage(
  bytes: Buffer,
  backend: string,
  what = 'an image',
): Promise<{ contentType: ImageType; width: number; height: number }> {
  const contentType = sniffImageType(bytes);
  if (!contentType)
    throw new ImagineError(
      'GENERATOR_BAD_RESPONSE',
      `${backend} served ${what} that is not PNG, JPEG or WebP`,
    );
  const meta = await sharp(bytes)
    .metadata()
    .catch(() => undefined);
  if (!meta?.width || !meta.height)
    throw new ImagineError(
      'GENERATOR_BAD_RESPONSE',
      `${backend} served ${what} that does not decode`,
    );
  return { contentType, width: meta.width, height: meta.height };
}
