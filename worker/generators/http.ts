/**
 * The HTTP generator: POST JSON `{task, prompt, width, height, steps, count, seeds, seed,
 * strength?, image?, image_type?, deadline}` to an endpoint that answers with the images (README,
 * "The generator contract"): a progress stream, JSON `{images: [...]}`, or the bytes of one
 * image. With Modal credentials it is the Flux-on-Modal generator (`Modal-Key` / `Modal-Secret`
 * proxy auth). Every failure is a coded error.
 *
 * Modal answers a web request still running after 150 s with a 303 to the call's result URL;
 * a GET there waits for the same call (and may be redirected again). Those redirects are
 * followed here, same origin only (the credentials go with them), and a dropped connection to a
 * result URL is retried there: re-POSTing would start a second generation.
 * `deadline` (Unix seconds) is when this client stops waiting; the Modal app uses no GPU for a
 * request that reaches it later and stops a running one at its next step.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ImagineError } from '../../contracts/errors.ts';
import { sniffImageType } from '../../contracts/image-types.ts';
import type {
  GeneratedImage,
  GenerateOptions,
  GenerateProgress,
  GenerateRequest,
  Generator,
} from '../generator.ts';

/** The streaming answer's media type: progress lines, then the image line. */
export const PROGRESS_STREAM_TYPE = 'application/x-ndjson';
/** Largest preview a progress line may carry (decoded), bytes. */
export const PREVIEW_MAX_BYTES = 256 * 1024;

/** One image as the endpoint answered it, before it is checked. */
interface AnsweredImage {
  bytes: Buffer;
  seed?: number;
}

/** Decode one base64 image of an answer, under the byte cap. */
function answeredImage(data: unknown, seed: unknown, maxBytes: number): AnsweredImage {
  if (typeof data !== 'string')
    throw new ImagineError('GENERATOR_BAD_RESPONSE', 'an image in the answer carries no data');
  if (data.length > Math.ceil((maxBytes * 4) / 3) + 4)
    throw new ImagineError('GENERATOR_TOO_LARGE', `generator answered over ${maxBytes} bytes`);
  const bytes = Buffer.from(data, 'base64');
  if (bytes.length > maxBytes)
    throw new ImagineError('GENERATOR_TOO_LARGE', `generator answered over ${maxBytes} bytes`);
  return Number.isInteger(seed) ? { bytes, seed: seed as number } : { bytes };
}

/**
 * Read a progress stream (README, "The generator contract"): NDJSON lines
 * `{"type":"progress","step":i,"steps":n,"preview"?:base64}`, then one
 * `{"type":"image","index"?:i,"seed":s,"data":base64}` per image (or `{"type":"error",…}`).
 * Malformed progress lines are skipped (progress is a courtesy); a missing or bad image line is
 * an error. Returns once `count` images have come, in index order (arrival order without one).
 */
async function readProgressStream(
  response: Response,
  count: number,
  maxBytes: number,
  signal: AbortSignal,
  onProgress: ((p: GenerateProgress) => void) | undefined,
): Promise<AnsweredImage[]> {
  if (!response.body) throw new ImagineError('GENERATOR_BAD_RESPONSE', 'generator sent no stream');
  // base64 makes each image 4/3 as long; progress lines and previews come on top.
  const cap = count * Math.ceil(maxBytes * 1.4) + 4 * PREVIEW_MAX_BYTES;
  const decoder = new TextDecoder();
  const images: Array<AnsweredImage | undefined> = new Array(count).fill(undefined);
  let received = 0;
  let pending = '';
  let total = 0;
  /** Handle one line; true once every image has come. */
  const handle = (line: string): boolean => {
    if (line.trim() === '') return false;
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line);
    } catch {
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        'generator sent a stream line that is not JSON',
      );
    }
    if (event.type === 'progress') {
      const { step, steps } = event;
      if (!Number.isInteger(step) || !Number.isInteger(steps) || (steps as number) < 1)
        return false;
      const progress: GenerateProgress = {
        step: Math.max(0, Math.min(step as number, steps as number)),
        steps: steps as number,
      };
      if (typeof event.preview === 'string' && event.preview.length <= PREVIEW_MAX_BYTES * 1.4) {
        const bytes = Buffer.from(event.preview, 'base64');
        const contentType = sniffImageType(bytes);
        if (contentType) progress.preview = { bytes, contentType };
      }
      try {
        onProgress?.(progress);
      } catch {
        // A listener's failure is not the generator's.
      }
      return false;
    }
    if (event.type === 'error')
      throw new ImagineError(
        'GENERATION_FAILED',
        `generator failed: ${String(event.message ?? 'no reason given').slice(0, 300)}`,
      );
    if (event.type === 'image') {
      const index = event.index === undefined ? images.indexOf(undefined) : event.index;
      if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= count)
        throw new ImagineError(
          'GENERATOR_BAD_RESPONSE',
          `generator sent an image line past the ${count} asked for`,
        );
      if (images[index as number])
        throw new ImagineError('GENERATOR_BAD_RESPONSE', `generator sent image ${index} twice`);
      images[index as number] = answeredImage(event.data, event.seed, maxBytes);
      received++;
      return received === count;
    }
    return false;
  };
  const done = async () => {
    await response.body?.cancel().catch(() => {});
    return images as AnsweredImage[];
  };
  for await (const chunk of response.body) {
    signal.throwIfAborted();
    total += chunk.length;
    if (total > cap) {
      await response.body.cancel().catch(() => {});
      throw new ImagineError('GENERATOR_TOO_LARGE', `generator streamed over ${cap} bytes`);
    }
    pending += decoder.decode(chunk, { stream: true });
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const complete = handle(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (complete) return done();
      nl = pending.indexOf('\n');
    }
  }
  if (handle(pending + decoder.decode())) return done();
  throw new ImagineError(
    'GENERATOR_BAD_RESPONSE',
    received === 0
      ? 'the stream ended before the image'
      : `the stream ended after ${received} of ${count} images`,
  );
}

/** Read a JSON answer `{"images": [{"image": base64, "seed"?}, …]}`, one entry per seed. */
async function readJsonImages(
  response: Response,
  count: number,
  maxBytes: number,
  signal: AbortSignal,
): Promise<AnsweredImage[]> {
  const text = (
    await readCapped(response, count * Math.ceil(maxBytes * 1.4) + 64 * 1024, signal)
  ).toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ImagineError('GENERATOR_BAD_RESPONSE', 'generator answered JSON that does not parse');
  }
  const images = (body as { images?: unknown } | null)?.images;
  if (!Array.isArray(images) || images.length !== count)
    throw new ImagineError(
      'GENERATOR_BAD_RESPONSE',
      `generator answered ${Array.isArray(images) ? images.length : 'no'} images for ${count} seeds`,
    );
  return images.map((entry: { image?: unknown; data?: unknown; seed?: unknown } | null) =>
    answeredImage(entry?.image ?? entry?.data, entry?.seed, maxBytes),
  );
}

/** The reason in a refusal's body: flux_core's `{error: {message}}`, FastAPI's `detail`, or text. */
function refusalReason(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown }; detail?: unknown };
    const reason = body?.error?.message ?? body?.detail;
    if (typeof reason === 'string') return reason;
  } catch {
    // not JSON: the text itself
  }
  return text;
}

/** Options of {@link HttpGenerator}. */
export interface HttpGeneratorOptions {
  name: string;
  url: string;
  modalKey?: string | undefined;
  modalSecret?: string | undefined;
  timeoutMs: number;
  maxBytes: number;
  fetch?: typeof fetch;
}

async function readCapped(
  response: Response,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes)
    throw new ImagineError(
      'GENERATOR_TOO_LARGE',
      `generator answered ${declared} bytes; the limit is ${maxBytes}`,
    );
  if (!response.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body) {
    signal.throwIfAborted();
    total += chunk.length;
    if (total > maxBytes) {
      await response.body.cancel().catch(() => {});
      throw new ImagineError('GENERATOR_TOO_LARGE', `generator answered over ${maxBytes} bytes`);
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks, total);
}

/** Redirects followed for one call: Modal re-redirects a result URL every 150 s. */
const MAX_REDIRECTS = 40;
/** Reconnections to a result URL after a dropped connection. */
const RESULT_RECONNECTS = 3;

/**
 * The generator's own safety score (`X-Safety-Score: 0.93`, 0–1, higher is less safe). A value
 * that is not a number in range is a bad response: a checker's verdict must not be guessed at.
 */
function parseSafetyScore(raw: string | null): number | undefined {
  if (raw === null) return undefined;
  const n = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
    throw new ImagineError(
      'GENERATOR_BAD_RESPONSE',
      `X-Safety-Score must be a number from 0 to 1, not ${JSON.stringify(raw.slice(0, 40))}`,
    );
  return n;
}

/** Calls an HTTP image endpoint (Flux on Modal, or any service speaking the same contract). */
export class HttpGenerator implements Generator {
  readonly name: string;
  private readonly fetch: typeof fetch;

  private readonly opts: HttpGeneratorOptions;

  constructor(opts: HttpGeneratorOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.fetch = opts.fetch ?? fetch;
  }

  /**
   * POST the request and follow redirects by hand: same origin only, a 303 (Modal's result URL)
   * as a GET, and a result URL whose connection drops is asked again rather than re-POSTed.
   */
  private async call(
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Response> {
    const origin = new URL(this.opts.url).origin;
    let url = new URL(this.opts.url);
    let response = await this.fetch(url, {
      method: 'POST',
      headers,
      body,
      signal,
      redirect: 'manual',
    });
    for (let redirects = 0; [301, 302, 303, 307, 308].includes(response.status); redirects++) {
      await response.body?.cancel().catch(() => {});
      const location = response.headers.get('location');
      if (!location)
        throw new ImagineError(
          'GENERATOR_BAD_RESPONSE',
          `generator answered HTTP ${response.status} without a Location`,
        );
      const next = new URL(location, url);
      if (next.origin !== origin)
        throw new ImagineError(
          'GENERATOR_BAD_RESPONSE',
          `generator redirected to ${next.origin}, another origin; not following it with the credentials`,
        );
      if (redirects >= MAX_REDIRECTS)
        throw new ImagineError(
          'GENERATOR_BAD_RESPONSE',
          `generator redirected more than ${MAX_REDIRECTS} times`,
        );
      url = next;
      // 307/308 repeat the POST where they point; 301/302/303 (Modal's result URL) become a GET.
      response =
        response.status === 307 || response.status === 308
          ? await this.fetch(url, { method: 'POST', headers, body, signal, redirect: 'manual' })
          : await this.getResult(url, headers, signal);
    }
    return response;
  }

  /** GET a result URL; it can be asked again without starting a new generation. */
  private async getResult(
    url: URL,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Response> {
    const { 'content-type': _, ...getHeaders } = headers;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.fetch(url, {
          method: 'GET',
          headers: getHeaders,
          signal,
          redirect: 'manual',
        });
      } catch (err) {
        if (signal.aborted || attempt >= RESULT_RECONNECTS) throw err;
        await sleep(200 * 2 ** attempt, undefined, { signal });
      }
    }
  }

  async generate(
    req: GenerateRequest,
    { signal, onProgress }: GenerateOptions,
  ): Promise<GeneratedImage[]> {
    const count = req.seeds.length;
    const seed = req.seeds[0];
    if (seed === undefined)
      throw new ImagineError('GENERATION_FAILED', 'a generator call needs at least one seed');
    if (req.task !== 'generate' && !req.input)
      throw new ImagineError('GENERATION_FAILED', `a ${req.task} needs its input image`);
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const combined = AbortSignal.any([signal, timeout]);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      // A generator that can report progress streams it (README); JSON images and plain image
      // bytes still work.
      accept: `${PROGRESS_STREAM_TYPE}, application/json;q=0.9, image/*;q=0.8`,
    };
    if (this.opts.modalKey) headers['modal-key'] = this.opts.modalKey;
    if (this.opts.modalSecret) headers['modal-secret'] = this.opts.modalSecret;
    try {
      const response = await this.call(
        JSON.stringify({
          task: req.task,
          prompt: req.prompt,
          width: req.width,
          height: req.height,
          steps: req.steps,
          count,
          seeds: req.seeds,
          // For endpoints written before the creative loop.
          seed,
          ...(req.strength !== undefined ? { strength: req.strength } : {}),
          ...(req.input
            ? { image: req.input.bytes.toString('base64'), image_type: req.input.contentType }
            : {}),
          deadline: (Date.now() + this.opts.timeoutMs) / 1000,
        }),
        headers,
        combined,
      );
      if (response.status === 401 || response.status === 403) {
        await response.body?.cancel();
        throw new ImagineError(
          'GENERATOR_AUTH',
          `generator refused the credentials (HTTP ${response.status}); check MODAL_KEY and MODAL_SECRET`,
        );
      }
      if (response.status === 408 || response.status === 429 || response.status >= 500) {
        await response.body?.cancel();
        throw new ImagineError(
          'GENERATOR_UNAVAILABLE',
          `generator answered HTTP ${response.status}`,
        );
      }
      if (!response.ok) {
        const text = (await readCapped(response, 64 * 1024, combined)).toString('utf8');
        // Any other 4xx: the endpoint refused this very request (a size over its limit, an
        // input it cannot read); another try would fail the same way.
        throw new ImagineError(
          'GENERATOR_REJECTED',
          `generator answered HTTP ${response.status}: ${refusalReason(text).slice(0, 300)}`,
        );
      }
      const type = response.headers.get('content-type') ?? '';
      const seedHeader = Number(response.headers.get('x-seed'));
      let answered: AnsweredImage[];
      if (type.startsWith(PROGRESS_STREAM_TYPE))
        answered = await readProgressStream(
          response,
          count,
          this.opts.maxBytes,
          combined,
          onProgress,
        );
      else if (type.startsWith('application/json'))
        answered = await readJsonImages(response, count, this.opts.maxBytes, combined);
      else {
        const bytes = await readCapped(response, this.opts.maxBytes, combined);
        if (count !== 1 && sniffImageType(bytes))
          throw new ImagineError(
            'GENERATOR_BAD_RESPONSE',
            `generator answered one image for a job of ${count}`,
          );
        answered = [
          Number.isInteger(seedHeader) && response.headers.has('x-seed')
            ? { bytes, seed: seedHeader }
            : { bytes },
        ];
      }
      // One header for the whole answer: it applies to every image in it.
      const safetyScore = parseSafetyScore(response.headers.get('x-safety-score'));
      return answered.map(({ bytes, seed: answeredSeed }, i) => {
        const contentType = sniffImageType(bytes);
        if (!contentType)
          throw new ImagineError(
            'GENERATOR_BAD_RESPONSE',
            `generator answered ${bytes.length} bytes that are not PNG, JPEG or WebP`,
          );
        return {
          bytes,
          contentType,
          seed: answeredSeed ?? (req.seeds[i] as number),
          width: req.width,
          height: req.height,
          ...(safetyScore === undefined ? {} : { safetyScore }),
        };
      });
    } catch (err) {
      if (err instanceof ImagineError) throw err;
      if (timeout.aborted)
        throw new ImagineError(
          'GENERATOR_TIMEOUT',
          `generator did not answer within ${this.opts.timeoutMs} ms`,
          { cause: err },
        );
      if (signal.aborted) throw err;
      throw new ImagineError('GENERATOR_UNAVAILABLE', 'generator cannot be reached', {
        cause: err,
      });
    }
  }
}
