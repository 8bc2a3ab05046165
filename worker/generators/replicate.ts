/**
 * Replicate adapter (hosted): one prediction per image (`POST /v1/models/{owner}/{name}/predictions`,
 * or `POST /v1/predictions` with a version), followed by polling `GET /v1/predictions/{id}`
 * (its logs carry the sampler's `i/n` progress), the output fetched from its file URL, and
 * `POST /v1/predictions/{id}/cancel` on abort or timeout. Inputs of a vary or upscale go up with
 * the Files API (`POST /v1/files`) and are deleted afterwards.
 *
 * Polling, not webhooks: a worker has no public address of its own. One prediction per seed: a
 * Flux prediction of several outputs shares one generator seed, so image i could not be made
 * again alone.
 */
import sharp from 'sharp';
import { ImagineError } from '../../contracts/errors.ts';
import { extensionFor } from '../../contracts/image-types.ts';
import type {
  GeneratedImage,
  GenerateOptions,
  GenerateRequest,
  Generator,
  GeneratorInput,
} from '../generator.ts';
import {
  type BackendCallOptions,
  backendFetch,
  failUnlessOk,
  readCapped,
  readJson,
  servedImage,
  sleep,
} from './backend-http.ts';

/** Aspect ratios Flux on Replicate takes (it has no width/height inputs). */
const ASPECTS = ['1:1', '16:9', '21:9', '3:2', '2:3', '4:5', '5:4', '3:4', '4:3', '9:16', '9:21'];

/** Options of {@link ReplicateGenerator}. */
export interface ReplicateOptions {
  name: string;
  /** API base (`https://api.replicate.com/v1`). */
  apiUrl: string;
  token: string;
  /** Text-to-image model: `owner/name` (an official model) or `owner/name:version`. */
  model: string;
  /** Image-to-image model for a vary (takes `image` and `prompt_strength`). */
  varyModel?: string | undefined;
  /** Upscale model (takes `image` and `scale`, as nightmareai/real-esrgan does). */
  upscaleModel?: string | undefined;
  /** Hosts output files may come from (`.example.com` matches its subdomains; `http://h:p` an origin). */
  outputHosts?: readonly string[];
  timeoutMs: number;
  maxBytes: number;
  pollIntervalMs?: number;
  fetch?: typeof fetch;
}

interface Prediction {
  id?: unknown;
  status?: unknown;
  output?: unknown;
  error?: unknown;
  logs?: unknown;
  urls?: { get?: unknown; cancel?: unknown };
}

const TERMINAL = new Set(['succeeded', 'failed', 'canceled', 'aborted']);

/** The Replicate generator. */
export class ReplicateGenerator implements Generator {
  readonly name: string;
  private readonly opts: ReplicateOptions;
  private readonly api: string;
  private readonly outputHosts: readonly string[];

  constructor(opts: ReplicateOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.api = opts.apiUrl.replace(/\/+$/, '');
    this.outputHosts = opts.outputHosts ?? ['replicate.delivery', '.replicate.delivery'];
  }

  private headers(json = true): Record<string, string> {
    return {
      authorization: `Bearer ${this.opts.token}`,
      accept: 'application/json',
      ...(json ? { 'content-type': 'application/json' } : {}),
    };
  }

  async generate(req: GenerateRequest, options: GenerateOptions): Promise<GeneratedImage[]> {
    const model =
      req.task === 'generate'
        ? (req.model ?? this.opts.model)
        : req.task === 'vary'
          ? this.opts.varyModel
          : this.opts.upscaleModel;
    if (!model)
      throw new ImagineError(
        'GENERATOR_REJECTED',
        `${this.name} has no Replicate model for a ${req.task}`,
      );
    if (req.task !== 'generate' && !req.input)
      throw new ImagineError('INVALID_PARAMETERS', `a ${req.task} needs an input image`);
    const call: BackendCallOptions = {
      backend: `${this.name} (Replicate)`,
      signal: options.signal,
      deadline: AbortSignal.timeout(this.opts.timeoutMs),
      deadlineMs: this.opts.timeoutMs,
      fetch: this.opts.fetch ?? fetch,
    };
    const file = req.input ? await this.upload(req.input, call) : undefined;
    // One failure stops the others: their images would be thrown away, and they cost money.
    const stop = new AbortController();
    const inner: BackendCallOptions = {
      ...call,
      signal: AbortSignal.any([call.signal, stop.signal]),
    };
    const started: string[] = [];
    const finished = new Set<string>();
    const progress = new Map<string, { step: number; steps: number }>();
    const report = () => {
      if (!options.onProgress || progress.size === 0 || stop.signal.aborted) return;
      const all = [...progress.values()];
      const per = Math.max(...all.map((p) => p.steps));
      options.onProgress({
        step: all.reduce((sum, p) => sum + Math.min(p.step, per), 0),
        steps: per * req.seeds.length,
      });
    };
    // Predictions run side by side on Replicate: one per seed, all at once. A creation is not cut
    // short by a cancel (only by the deadline): Replicate may have taken the POST already, and a
    // prediction whose id never came back would run on, billed, with nothing to cancel it. Each
    // one created is known, and one that comes back after the stop is cancelled with the rest.
    const creation: BackendCallOptions = { ...call, signal: new AbortController().signal };
    const tasks = req.seeds.map(async (seed) => {
      const prediction = await this.create(model, this.inputFor(req, seed, file?.url), creation);
      const id = String(prediction.id);
      started.push(id);
      inner.signal.throwIfAborted();
      const done = await this.follow(id, prediction, inner, finished, (p) => {
        progress.set(id, p);
        report();
      });
      return this.fetchOutput(done, seed, req, inner);
    });
    try {
      return await Promise.all(tasks);
    } catch (err) {
      stop.abort(err);
      await Promise.allSettled(tasks);
      await this.cancel(started.filter((id) => !finished.has(id)));
      throw err;
    } finally {
      stop.abort();
      if (file) await this.deleteFile(file.id);
    }
  }

  /** The model's input for one image. */
  private inputFor(
    req: GenerateRequest,
    seed: number,
    image: string | undefined,
  ): Record<string, unknown> {
    if (req.task === 'upscale')
      return { image, scale: Math.max(1, Math.round(req.width / Math.max(1, req.input!.width))) };
    const input: Record<string, unknown> = {
      prompt: req.prompt,
      seed,
      num_outputs: 1,
      num_inference_steps: req.steps,
      output_format: 'png',
    };
    if (req.task === 'vary') {
      input.image = image;
      input.prompt_strength = req.strength;
    } else {
      input.aspect_ratio = nearestAspect(req.width, req.height);
      input.megapixels = req.width * req.height <= 0.3 * 1024 * 1024 ? '0.25' : '1';
    }
    return input;
  }

  private async create(
    model: string,
    input: Record<string, unknown>,
    call: BackendCallOptions,
  ): Promise<Prediction> {
    const [ref, version] = model.split(':');
    const url = version ? `${this.api}/predictions` : `${this.api}/models/${ref}/predictions`;
    const body = version ? { version, input } : { input };
    const response = await backendFetch(
      url,
      { method: 'POST', headers: this.headers(), body: JSON.stringify(body) },
      call,
    );
    await failUnlessOk(
      response,
      { ...call, what: `a prediction of ${model}`, authHint: 'check REPLICATE_API_TOKEN' },
      describeReplicateError,
    );
    const prediction = (await readJson(response, 256 * 1024, {
      ...call,
      what: 'the prediction',
    })) as Prediction;
    if (typeof prediction.id !== 'string')
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} created a prediction without an id`,
      );
    return prediction;
  }

  /** Poll until the prediction is terminal; succeeded is returned, anything else thrown. */
  private async follow(
    id: string,
    first: Prediction,
    call: BackendCallOptions,
    terminal: Set<string>,
    onSteps: (p: { step: number; steps: number }) => void,
  ): Promise<Prediction> {
    let prediction = first;
    const every = this.opts.pollIntervalMs ?? 1000;
    for (;;) {
      const steps = stepsFromLogs(prediction.logs);
      if (steps) onSteps(steps);
      const status = String(prediction.status);
      if (TERMINAL.has(status)) terminal.add(id);
      if (status === 'succeeded') return prediction;
      if (TERMINAL.has(status)) throw predictionError(prediction, call.backend);
      await sleep(every, AbortSignal.any([call.signal, call.deadline])).catch((err) => {
        throw call.signal.aborted
          ? err
          : new ImagineError(
              'GENERATOR_TIMEOUT',
              `${call.backend} did not finish within ${call.deadlineMs} ms`,
            );
      });
      const response = await backendFetch(
        `${this.api}/predictions/${encodeURIComponent(id)}`,
        { headers: this.headers(false) },
        call,
      );
      await failUnlessOk(
        response,
        { ...call, what: 'the prediction status', authHint: 'check REPLICATE_API_TOKEN' },
        describeReplicateError,
      );
      prediction = (await readJson(response, 1024 * 1024, {
        ...call,
        what: 'the prediction',
      })) as Prediction;
    }
  }

  private async fetchOutput(
    prediction: Prediction,
    seed: number,
    req: GenerateRequest,
    call: BackendCallOptions,
  ): Promise<GeneratedImage> {
    const output = Array.isArray(prediction.output) ? prediction.output[0] : prediction.output;
    if (typeof output !== 'string')
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} succeeded without an output file`,
      );
    let url: URL;
    try {
      url = new URL(output);
    } catch {
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} answered an output that is not a URL`,
      );
    }
    const api = new URL(this.api);
    // File hosts by name (https only; `.x` matches subdomains) or by exact origin.
    const allowed =
      url.origin === api.origin ||
      this.outputHosts.some((h) =>
        h.includes('://')
          ? url.origin === h
          : url.protocol === 'https:' &&
            (h.startsWith('.') ? url.hostname.endsWith(h) : url.hostname === h),
      );
    if (!allowed)
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} answered an output on a host it may not use (${url.hostname})`,
      );
    // The token goes to the API's own host only, never to a file host.
    const response = await backendFetch(
      url.href,
      { headers: url.origin === api.origin ? this.headers(false) : {} },
      call,
    );
    await failUnlessOk(response, {
      ...call,
      what: 'the output file',
      authHint: 'check REPLICATE_API_TOKEN',
    });
    let bytes = await readCapped(response, this.opts.maxBytes, call);
    const served = await servedImage(bytes, call.backend, 'an output');
    let contentType = served.contentType;
    // Flux on Replicate picks its own size for an aspect ratio: bring it to the size asked for.
    if (served.width !== req.width || served.height !== req.height) {
      bytes = await sharp(bytes).resize(req.width, req.height, { fit: 'cover' }).png().toBuffer();
      contentType = 'image/png';
    }
    return { bytes, contentType, seed, width: req.width, height: req.height };
  }

  private async upload(
    input: GeneratorInput,
    call: BackendCallOptions,
  ): Promise<{ id: string; url: string }> {
    const form = new FormData();
    form.append(
      'content',
      new Blob([new Uint8Array(input.bytes)], { type: input.contentType }),
      `imagine-input.${extensionFor(input.contentType)}`,
    );
    const response = await backendFetch(
      `${this.api}/files`,
      { method: 'POST', headers: { authorization: `Bearer ${this.opts.token}` }, body: form },
      call,
    );
    await failUnlessOk(
      response,
      { ...call, what: 'the input upload', authHint: 'check REPLICATE_API_TOKEN' },
      describeReplicateError,
    );
    const file = (await readJson(response, 64 * 1024, { ...call, what: 'the upload' })) as {
      id?: unknown;
      urls?: { get?: unknown };
    };
    if (typeof file.id !== 'string' || typeof file.urls?.get !== 'string')
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} answered the upload without a file URL`,
      );
    return { id: file.id, url: file.urls.get };
  }

  private async deleteFile(id: string): Promise<void> {
    try {
      const res = await (this.opts.fetch ?? fetch)(`${this.api}/files/${encodeURIComponent(id)}`, {
        method: 'DELETE',
        headers: this.headers(false),
        signal: AbortSignal.timeout(5000),
      });
      await res.body?.cancel();
    } catch {
      // Replicate expires uploaded files on its own.
    }
  }

  /** Cancel predictions still running (best effort). */
  private async cancel(ids: string[]): Promise<void> {
    await Promise.all(
      ids.map(async (id) => {
        try {
          const res = await (this.opts.fetch ?? fetch)(
            `${this.api}/predictions/${encodeURIComponent(id)}/cancel`,
            { method: 'POST', headers: this.headers(false), signal: AbortSignal.timeout(5000) },
          );
          await res.body?.cancel();
        } catch {
          // Unreachable now: it ends on its own, and nothing waits for it.
        }
      }),
    );
  }
}

/** The aspect ratio of those Flux takes nearest to width:height. */
export function nearestAspect(width: number, height: number): string {
  const want = Math.log(width / height);
  let best = ASPECTS[0]!;
  for (const a of ASPECTS) {
    const [w, h] = a.split(':').map(Number) as [number, number];
    const [bw, bh] = best.split(':').map(Number) as [number, number];
    if (Math.abs(Math.log(w / h) - want) < Math.abs(Math.log(bw / bh) - want)) best = a;
  }
  return best;
}

/** The sampler's progress in the logs (tqdm: ` 50%|█████     | 2/4 [00:00<00:00]`). */
function stepsFromLogs(logs: unknown): { step: number; steps: number } | undefined {
  if (typeof logs !== 'string') return undefined;
  const all = [...logs.matchAll(/(\d+)\/(\d+) \[/g)];
  const last = all.at(-1);
  if (!last) return undefined;
  const step = Number(last[1]);
  const steps = Number(last[2]);
  return steps > 0 && step <= steps ? { step, steps } : undefined;
}

/** A prediction that ended without output: out of memory and unknown errors may pass on retry. */
function predictionError(p: Prediction, backend: string): ImagineError {
  const status = String(p.status);
  const reason = typeof p.error === 'string' ? p.error.trim().slice(0, 300) : '';
  if (status === 'canceled' || status === 'aborted')
    return new ImagineError('GENERATOR_UNAVAILABLE', `${backend}: the prediction was ${status}`);
  const text = `${backend}: the prediction failed${reason ? `: ${reason}` : ''}`;
  if (/E1000|E1001|out of memory|OOM|timed out|internal error/i.test(reason))
    return new ImagineError('GENERATOR_UNAVAILABLE', text);
  return new ImagineError('GENERATION_FAILED', text);
}

/** Replicate's problem bodies: `{title, detail, status, invalid_fields}`. */
function describeReplicateError(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { title?: unknown; detail?: unknown };
    return [parsed.title, parsed.detail].filter((s) => typeof s === 'string' && s).join(': ');
  } catch {
    return undefined;
  }
}
