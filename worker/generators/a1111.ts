/**
 * AUTOMATIC1111 / Forge web API adapter (`--api`): txt2img, img2img (vary, image input) and
 * upscale through `/sdapi/v1/extra-single-image`; progress by polling `/sdapi/v1/progress`,
 * cancel with `/sdapi/v1/interrupt`; optional `--api-auth` basic auth.
 *
 * A1111 runs one generation at a time (a global queue lock) and its progress and interrupt are
 * global, not per request. So the adapter sends one request at a time to its server, and the
 * progress it polls and the interrupt it sends are its own request's.
 */
import { ImagineError } from '../../contracts/errors.ts';
import { sniffImageType } from '../../contracts/image-types.ts';
import type { GeneratedImage, GenerateOptions, GenerateRequest, Generator } from '../generator.ts';
import {
  type BackendCallOptions,
  backendFetch,
  failUnlessOk,
  OneAtATime,
  readJson,
  sleep,
} from './backend-http.ts';

/** Options of {@link A1111Generator}. */
export interface A1111Options {
  name: string;
  /** Base URL of the web UI started with `--api` (`http://gpu:7860`). */
  url: string;
  /** `user:password` as given to `--api-auth`. */
  auth?: string | undefined;
  /** `sd_model_checkpoint` to use (unset: whatever the server has loaded). */
  model?: string | undefined;
  sampler: string;
  scheduler?: string | undefined;
  cfgScale: number;
  negativePrompt?: string | undefined;
  /** Upscaler name as `/sdapi/v1/upscalers` lists it. */
  upscaler: string;
  /** Strength of a vary when the request gives none. */
  varyStrength: number;
  timeoutMs: number;
  maxBytes: number;
  /** How often progress is polled while a request runs. */
  progressIntervalMs?: number;
  fetch?: typeof fetch;
}

interface A1111Progress {
  progress?: number;
  state?: { job_count?: number; job_no?: number; sampling_step?: number; sampling_steps?: number };
  current_image?: string | null;
}

/** The A1111 / Forge generator. */
export class A1111Generator implements Generator {
  readonly name: string;
  private readonly opts: A1111Options;
  private readonly base: string;
  private readonly line = new OneAtATime();

  constructor(opts: A1111Options) {
    this.opts = opts;
    this.name = opts.name;
    this.base = opts.url.replace(/\/+$/, '');
  }

  /** Make every image of the request, in seed order. */
  async generate(batch: GenerateRequest, options: GenerateOptions): Promise<GeneratedImage[]> {
    if (batch.seeds.length === 0) throw new ImagineError('INVALID_PARAMETERS', 'no seeds given');
    if (batch.task !== 'generate' && !batch.input)
      throw new ImagineError('INVALID_PARAMETERS', `a ${batch.task} needs an input image`);
    // A1111 seeds a batch with seed, seed+1, ...: each run of consecutive seeds is one request.
    const groups: number[][] = [];
    for (const seed of batch.seeds) {
      const group = groups.at(-1);
      if (group && batch.task !== 'upscale' && seed === group.at(-1)! + 1) group.push(seed);
      else groups.push([seed]);
    }
    return this.line.run(options.signal, async () => {
      const images: GeneratedImage[] = [];
      for (const [i, seeds] of groups.entries()) {
        const onProgress = options.onProgress;
        const scaled: GenerateOptions = {
          signal: options.signal,
          ...(onProgress
            ? {
                onProgress: (p) =>
                  onProgress({ ...p, step: i * p.steps + p.step, steps: groups.length * p.steps }),
              }
            : {}),
        };
        images.push(...(await this.run({ ...batch, seeds }, scaled)));
      }
      return images;
    });
  }

  private headers(): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json',
    };
    if (this.opts.auth)
      headers.authorization = `Basic ${Buffer.from(this.opts.auth).toString('base64')}`;
    return headers;
  }

  private call(signal: AbortSignal): BackendCallOptions {
    return {
      backend: `${this.name} (A1111 at ${this.base})`,
      signal,
      deadline: AbortSignal.timeout(this.opts.timeoutMs),
      deadlineMs: this.opts.timeoutMs,
      fetch: this.opts.fetch ?? fetch,
    };
  }

  private async run(batch: GenerateRequest, options: GenerateOptions): Promise<GeneratedImage[]> {
    const call = this.call(options.signal);
    const { path, body } = this.requestFor(batch);
    const polling = new AbortController();
    const poller = options.onProgress
      ? this.pollProgress(options.onProgress, AbortSignal.any([polling.signal, options.signal]))
      : Promise.resolve();
    const onAbort = () => void this.interrupt();
    options.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const response = await backendFetch(
        `${this.base}${path}`,
        { method: 'POST', headers: this.headers(), body: JSON.stringify(body) },
        call,
      );
      await failUnlessOk(
        response,
        { ...call, what: path, authHint: 'check A1111_AUTH (the `--api-auth` user:password)' },
        describeA1111Error,
      );
      // Base64 images inside JSON: about 4/3 of the bytes, plus the parameters echoed back.
      const cap = Math.ceil(this.opts.maxBytes * batch.seeds.length * 1.4) + 1024 * 1024;
      const json = await readJson(response, cap, { ...call, what: path });
      return this.imagesFrom(json, batch, path);
    } finally {
      options.signal.removeEventListener('abort', onAbort);
      polling.abort();
      await poller;
    }
  }

  private requestFor(batch: GenerateRequest): { path: string; body: Record<string, unknown> } {
    if (batch.task === 'upscale') {
      return {
        path: '/sdapi/v1/extra-single-image',
        body: {
          image: batch.input!.bytes.toString('base64'),
          resize_mode: 1,
          upscaling_resize_w: batch.width,
          upscaling_resize_h: batch.height,
          upscaling_crop: true,
          upscaler_1: this.opts.upscaler,
        },
      };
    }
    const body: Record<string, unknown> = {
      prompt: batch.prompt,
      negative_prompt: this.opts.negativePrompt ?? '',
      seed: batch.seeds[0],
      steps: batch.steps,
      width: batch.width,
      height: batch.height,
      cfg_scale: this.opts.cfgScale,
      sampler_name: this.opts.sampler,
      batch_size: batch.seeds.length,
      n_iter: 1,
      send_images: true,
      save_images: false,
    };
    if (this.opts.scheduler) body.scheduler = this.opts.scheduler;
    const model = batch.model ?? this.opts.model;
    if (model) {
      body.override_settings = { sd_model_checkpoint: model };
      body.override_settings_restore_afterwards = true;
    }
    if (batch.task === 'vary') {
      body.init_images = [batch.input!.bytes.toString('base64')];
      body.denoising_strength = batch.strength ?? this.opts.varyStrength;
      return { path: '/sdapi/v1/img2img', body };
    }
    return { path: '/sdapi/v1/txt2img', body };
  }

  private imagesFrom(json: unknown, batch: GenerateRequest, path: string): GeneratedImage[] {
    const bad = (why: string) =>
      new ImagineError('GENERATOR_BAD_RESPONSE', `${this.name} answered ${path} with ${why}`);
    if (typeof json !== 'object' || json === null) throw bad('no JSON object');
    const answer = json as { images?: unknown; image?: unknown; info?: unknown };
    const encoded =
      batch.task === 'upscale'
        ? [answer.image]
        : Array.isArray(answer.images)
          ? answer.images
          : undefined;
    if (!encoded || encoded.length === 0) throw bad('no images');
    const info = parseInfo(answer.info);
    const wanted = batch.task === 'upscale' ? 1 : batch.seeds.length;
    // A1111 appends a grid (and ControlNet maps) after the images when it makes them.
    const images = encoded.slice(0, wanted).map((b64, i): GeneratedImage => {
      if (typeof b64 !== 'string') throw bad('an image that is not a string');
      const bytes = Buffer.from(b64.replace(/^data:image\/[a-z]+;base64,/, ''), 'base64');
      if (bytes.length > this.opts.maxBytes)
        throw new ImagineError(
          'GENERATOR_TOO_LARGE',
          `${this.name} answered an image of ${bytes.length} bytes; the limit is ${this.opts.maxBytes}`,
        );
      const contentType = sniffImageType(bytes);
      if (!contentType) throw bad('an image that is not PNG, JPEG or WebP');
      const seed = info.all_seeds?.[i] ?? batch.seeds[i] ?? batch.seeds[0]!;
      return {
        bytes,
        contentType,
        seed,
        width: info.width ?? batch.width,
        height: info.height ?? batch.height,
      };
    });
    if (images.length < wanted) throw bad(`${images.length} images for ${wanted} seeds`);
    return images;
  }

  private async pollProgress(
    onProgress: NonNullable<GenerateOptions['onProgress']>,
    signal: AbortSignal,
  ): Promise<void> {
    const every = this.opts.progressIntervalMs ?? 1000;
    let last = '';
    while (!signal.aborted) {
      try {
        await sleep(every, signal);
        const call = { ...this.call(signal), deadline: AbortSignal.timeout(every * 5) };
        const response = await backendFetch(
          `${this.base}/sdapi/v1/progress?skip_current_image=false`,
          { headers: this.headers() },
          call,
        );
        if (!response.ok) {
          await response.body?.cancel();
          continue;
        }
        const p = (await readJson(response, this.opts.maxBytes * 2, {
          ...call,
          what: 'progress',
        })) as A1111Progress;
        const state = p.state ?? {};
        const steps = state.sampling_steps ?? 0;
        const jobs = Math.max(1, state.job_count ?? 0);
        if (signal.aborted || steps <= 0 || (state.job_count ?? 0) <= 0) continue;
        const step = (state.job_no ?? 0) * steps + (state.sampling_step ?? 0);
        const key = `${step}/${steps * jobs}`;
        if (key === last && !p.current_image) continue;
        last = key;
        const preview = p.current_image ? Buffer.from(p.current_image, 'base64') : undefined;
        const previewType = preview ? sniffImageType(preview) : undefined;
        onProgress({
          step: Math.min(step, steps * jobs),
          steps: steps * jobs,
          ...(preview && previewType
            ? { preview: { bytes: preview, contentType: previewType } }
            : {}),
        });
      } catch {
        // Progress is best effort; the generation request decides the outcome.
      }
    }
  }

  /** Stop the running generation (best effort: the request itself then settles). */
  private async interrupt(): Promise<void> {
    try {
      const response = await (this.opts.fetch ?? fetch)(`${this.base}/sdapi/v1/interrupt`, {
        method: 'POST',
        headers: this.headers(),
        signal: AbortSignal.timeout(5000),
      });
      await response.body?.cancel();
    } catch {
      // The server is gone or busy: nothing more to stop.
    }
  }
}

/** The `info` field: a JSON string with the seeds and size actually used. */
function parseInfo(info: unknown): { all_seeds?: number[]; width?: number; height?: number } {
  if (typeof info !== 'string') return {};
  try {
    const parsed = JSON.parse(info) as Record<string, unknown>;
    const seeds = Array.isArray(parsed.all_seeds)
      ? parsed.all_seeds.filter((s): s is number => Number.isInteger(s))
      : undefined;
    return {
      ...(seeds ? { all_seeds: seeds } : {}),
      ...(Number.isInteger(parsed.width) ? { width: parsed.width as number } : {}),
      ...(Number.isInteger(parsed.height) ? { height: parsed.height as number } : {}),
    };
  } catch {
    return {};
  }
}

/** A1111's error bodies: `{error, detail, body, errors}` from its handler, or FastAPI's `{detail}`. */
function describeA1111Error(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: unknown; detail?: unknown; errors?: unknown };
    const detail =
      typeof parsed.detail === 'string'
        ? parsed.detail
        : Array.isArray(parsed.detail)
          ? parsed.detail
              .map((d: { loc?: unknown[]; msg?: string }) => `${d.loc?.join('.')}: ${d.msg}`)
              .join('; ')
          : '';
    return [parsed.error, detail, parsed.errors]
      .filter((s) => typeof s === 'string' && s)
      .join(': ');
  } catch {
    return undefined;
  }
}
