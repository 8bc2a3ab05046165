/**
 * ComfyUI adapter: a workflow in API format with placeholders, queued with `POST /prompt`,
 * followed over its WebSocket (`/ws?clientId=`: `progress`, `executing`, `execution_success`,
 * `execution_error`, `execution_interrupted`, binary preview frames), images read from
 * `/history/{id}` and fetched from `/view`; input images go up with `/upload/image`; cancel is
 * `POST /queue {delete}` for what has not started and `POST /interrupt` for what runs.
 *
 * One prompt per image, each with its own seed (`{{count}}` is 1): a ComfyUI batch shares one
 * noise seed, so image i of a batch could not be made again alone from its seed. ComfyUI runs
 * the prompts back to back with the model loaded.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { ImagineError } from '../../contracts/errors.ts';
import { extensionFor, sniffImageType } from '../../contracts/image-types.ts';
import type {
  GeneratedImage,
  GenerateOptions,
  GenerateRequest,
  Generator,
  GeneratorInput,
} from '../generator.ts';
import {
  abortReason,
  type BackendCallOptions,
  backendFetch,
  failUnlessOk,
  readCapped,
  readJson,
  servedImage,
} from './backend-http.ts';
import { fillWorkflow, type LoadedWorkflow } from './comfyui-workflow.ts';

/** Options of {@link ComfyUIGenerator}. */
export interface ComfyUIOptions {
  name: string;
  /** Base URL of the ComfyUI server (`http://gpu:8188`). */
  url: string;
  /** Value of an `Authorization` header, for a ComfyUI behind an authenticating proxy. */
  auth?: string | undefined;
  /** Value of `{{model}}` when the request names none. */
  model?: string | undefined;
  workflows: { generate: LoadedWorkflow; vary?: LoadedWorkflow; upscale?: LoadedWorkflow };
  timeoutMs: number;
  maxBytes: number;
  fetch?: typeof fetch;
}

interface PromptOutcome {
  done?: true;
  error?: ImagineError;
}

/** The ComfyUI generator. */
export class ComfyUIGenerator implements Generator {
  readonly name: string;
  private readonly opts: ComfyUIOptions;
  private readonly base: string;

  constructor(opts: ComfyUIOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.base = opts.url.replace(/\/+$/, '');
  }

  private headers(json = true): Record<string, string> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (json) headers['content-type'] = 'application/json';
    if (this.opts.auth) headers.authorization = this.opts.auth;
    return headers;
  }

  private workflowFor(req: GenerateRequest): LoadedWorkflow {
    const w = this.opts.workflows;
    const workflow =
      req.task === 'generate' ? w.generate : req.task === 'vary' ? w.vary : w.upscale;
    if (!workflow)
      throw new ImagineError(
        'GENERATOR_REJECTED',
        `${this.name} has no ComfyUI workflow for a ${req.task}`,
      );
    if (req.task !== 'generate' && !req.input)
      throw new ImagineError('INVALID_PARAMETERS', `a ${req.task} needs an input image`);
    return workflow;
  }

  async generate(req: GenerateRequest, options: GenerateOptions): Promise<GeneratedImage[]> {
    const workflow = this.workflowFor(req);
    if (req.seeds.length === 0) throw new ImagineError('INVALID_PARAMETERS', 'no seeds given');
    const call: BackendCallOptions = {
      backend: `${this.name} (ComfyUI at ${this.base})`,
      signal: options.signal,
      deadline: AbortSignal.timeout(this.opts.timeoutMs),
      deadlineMs: this.opts.timeoutMs,
      fetch: this.opts.fetch ?? fetch,
    };
    const clientId = randomUUID();
    const socket = await this.connect(clientId, call);
    const tracker = new PromptTracker(socket, req.seeds.length, options, call);
    const queued: string[] = [];
    const queueing: BackendCallOptions = { ...call, signal: new AbortController().signal };
    try {
      const image = req.input ? await this.upload(req.input, call) : undefined;
      for (const seed of req.seeds) {
        const filled = fillWorkflow(workflow, {
          prompt: req.prompt,
          seed,
          width: req.width,
          height: req.height,
          steps: req.steps,
          count: 1,
          ...(image ? { image } : {}),
          ...(req.strength !== undefined ? { strength: req.strength } : {}),
          ...((req.model ?? this.opts.model) ? { model: (req.model ?? this.opts.model)! } : {}),
        });
        // Queueing is not cut short by a cancel (only by the deadline): ComfyUI may have taken the
        // POST already, and a prompt whose id never came back would run with nothing to stop it.
        const id = await this.queue(filled, clientId, queueing);
        queued.push(id);
        tracker.track(id);
        call.signal.throwIfAborted();
      }
      await tracker.settled();
      const images: GeneratedImage[] = [];
      for (const [i, id] of queued.entries())
        images.push(await this.fetchOutput(id, req.seeds[i]!, call));
      return images;
    } catch (err) {
      // Whatever ended the call, the rest of its prompts would only burn GPU time: stop them.
      if (queued.length > 0) await this.cancel(queued, tracker);
      throw err;
    } finally {
      tracker.dispose();
      socket.terminate();
    }
  }

  /** Open the WebSocket first, so no event of our prompts is missed. */
  private connect(clientId: string, call: BackendCallOptions): Promise<WebSocket> {
    const wsUrl = `${this.base.replace(/^http/, 'ws')}/ws?clientId=${encodeURIComponent(clientId)}`;
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(wsUrl, {
        headers: this.opts.auth ? { authorization: this.opts.auth } : {},
        maxPayload: this.opts.maxBytes,
      });
      const both = AbortSignal.any([call.signal, call.deadline]);
      const onAbort = () => {
        socket.terminate();
        reject(
          call.signal.aborted
            ? abortReason(call.signal)
            : new ImagineError(
                'GENERATOR_TIMEOUT',
                `${call.backend}: WebSocket did not open in time`,
              ),
        );
      };
      both.addEventListener('abort', onAbort, { once: true });
      socket.once('open', () => {
        both.removeEventListener('abort', onAbort);
        resolve(socket);
      });
      socket.once('unexpected-response', (_req, res) => {
        both.removeEventListener('abort', onAbort);
        socket.terminate();
        const status = res.statusCode ?? 0;
        reject(
          new ImagineError(
            status === 401 || status === 403
              ? 'GENERATOR_AUTH'
              : status >= 500 || status === 429
                ? 'GENERATOR_UNAVAILABLE'
                : 'GENERATOR_REJECTED',
            `${call.backend} refused its WebSocket (HTTP ${status})${status === 401 || status === 403 ? '; check COMFYUI_AUTH' : ''}`,
          ),
        );
      });
      socket.once('error', (err) => {
        both.removeEventListener('abort', onAbort);
        reject(
          new ImagineError('GENERATOR_UNAVAILABLE', `${call.backend} cannot be reached`, {
            cause: err,
          }),
        );
      });
    });
  }

  private async upload(input: GeneratorInput, call: BackendCallOptions): Promise<string> {
    const form = new FormData();
    const filename = `imagine-${randomUUID()}.${extensionFor(input.contentType)}`;
    form.append(
      'image',
      new Blob([new Uint8Array(input.bytes)], { type: input.contentType }),
      filename,
    );
    form.append('type', 'input');
    form.append('subfolder', 'imagine');
    form.append('overwrite', 'true');
    const response = await backendFetch(
      `${this.base}/upload/image`,
      { method: 'POST', headers: this.headers(false), body: form },
      call,
    );
    await failUnlessOk(response, {
      ...call,
      what: 'the input image upload',
      authHint: 'check COMFYUI_AUTH',
    });
    const body = (await readJson(response, 64 * 1024, { ...call, what: 'the upload' })) as {
      name?: unknown;
      subfolder?: unknown;
    };
    if (typeof body.name !== 'string')
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} answered the upload without a name`,
      );
    return typeof body.subfolder === 'string' && body.subfolder
      ? `${body.subfolder}/${body.name}`
      : body.name;
  }

  private async queue(
    workflow: unknown,
    clientId: string,
    call: BackendCallOptions,
  ): Promise<string> {
    const response = await backendFetch(
      `${this.base}/prompt`,
      {
        method: 'POST',
        headers: this.headers(),
        body: JSON.stringify({ prompt: workflow, client_id: clientId }),
      },
      call,
    );
    await failUnlessOk(
      response,
      { ...call, what: 'the workflow', authHint: 'check COMFYUI_AUTH' },
      describeComfyError,
    );
    const body = (await readJson(response, 1024 * 1024, { ...call, what: '/prompt' })) as {
      prompt_id?: unknown;
    };
    if (typeof body.prompt_id !== 'string')
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} queued the workflow without a prompt_id`,
      );
    return body.prompt_id;
  }

  private async fetchOutput(
    id: string,
    seed: number,
    call: BackendCallOptions,
  ): Promise<GeneratedImage> {
    const response = await backendFetch(
      `${this.base}/history/${encodeURIComponent(id)}`,
      { headers: this.headers(false) },
      call,
    );
    await failUnlessOk(response, { ...call, what: 'the history', authHint: 'check COMFYUI_AUTH' });
    const history = (await readJson(response, 4 * 1024 * 1024, {
      ...call,
      what: '/history',
    })) as Record<
      string,
      {
        outputs?: Record<
          string,
          { images?: Array<{ filename?: unknown; subfolder?: unknown; type?: unknown }> }
        >;
      }
    >;
    const outputs = history[id]?.outputs ?? {};
    const file = Object.values(outputs)
      .flatMap((o) => o.images ?? [])
      .find((f) => typeof f.filename === 'string');
    if (!file)
      throw new ImagineError(
        'GENERATOR_BAD_RESPONSE',
        `${call.backend} finished the workflow without an image (does it end in SaveImage?)`,
      );
    const query = new URLSearchParams({
      filename: String(file.filename),
      subfolder: typeof file.subfolder === 'string' ? file.subfolder : '',
      type: typeof file.type === 'string' ? file.type : 'output',
    });
    const view = await backendFetch(
      `${this.base}/view?${query}`,
      { headers: this.headers(false) },
      call,
    );
    await failUnlessOk(view, { ...call, what: 'the image', authHint: 'check COMFYUI_AUTH' });
    const bytes = await readCapped(view, this.opts.maxBytes, call);
    const { contentType, width, height } = await servedImage(bytes, call.backend);
    return { bytes, contentType, seed, width, height };
  }

  /** Take our prompts off the queue and interrupt the one running (best effort). */
  private async cancel(ids: string[], tracker: PromptTracker): Promise<void> {
    const pending = ids.filter((id) => !tracker.ended(id));
    const post = async (path: string, body: unknown) => {
      try {
        const res = await (this.opts.fetch ?? fetch)(`${this.base}${path}`, {
          method: 'POST',
          headers: this.headers(),
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        });
        await res.body?.cancel();
      } catch {
        // The server is gone: nothing left to stop.
      }
    };
    if (pending.length > 0) await post('/queue', { delete: pending });
    const running = tracker.running;
    if (running && pending.includes(running)) await post('/interrupt', { prompt_id: running });
  }
}

/** Follows our prompts on the WebSocket: progress, previews, completion and failure. */
class PromptTracker {
  running: string | undefined;
  private readonly outcomes = new Map<string, PromptOutcome>();
  private readonly tracked: string[] = [];
  private readonly waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private failure: unknown;
  private step = 0;
  private maxSteps = 0;
  private readonly disposeAbort: () => void;

  private readonly socket: WebSocket;
  private readonly total: number;
  private readonly options: GenerateOptions;
  private readonly call: BackendCallOptions;

  constructor(
    socket: WebSocket,
    total: number,
    options: GenerateOptions,
    call: BackendCallOptions,
  ) {
    this.socket = socket;
    this.total = total;
    this.options = options;
    this.call = call;
    socket.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    socket.on('close', () => {
      if (!this.allDone())
        this.fail(
          new ImagineError('GENERATOR_UNAVAILABLE', `${call.backend} closed its WebSocket mid-job`),
        );
    });
    socket.on('error', () => {});
    const both = AbortSignal.any([call.signal, call.deadline]);
    const onAbort = () =>
      this.fail(
        call.signal.aborted
          ? abortReason(call.signal)
          : new ImagineError(
              'GENERATOR_TIMEOUT',
              `${call.backend} did not finish within ${call.deadlineMs} ms`,
            ),
      );
    both.addEventListener('abort', onAbort, { once: true });
    this.disposeAbort = () => both.removeEventListener('abort', onAbort);
  }

  track(id: string): void {
    this.tracked.push(id);
    this.check();
  }

  finished(id: string): boolean {
    return this.outcomes.get(id)?.done === true;
  }

  /** Finished or failed: nothing left to stop. */
  ended(id: string): boolean {
    const o = this.outcomes.get(id);
    return o?.done === true || o?.error !== undefined;
  }

  settled(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.check();
    });
  }

  dispose(): void {
    this.disposeAbort();
    this.socket.removeAllListeners('message');
  }

  private allDone(): boolean {
    return this.tracked.length === this.total && this.tracked.every((id) => this.finished(id));
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    this.check();
  }

  private check(): void {
    if (this.failure === undefined) {
      const failed = this.tracked.map((id) => this.outcomes.get(id)?.error).find(Boolean);
      if (failed) this.failure = failed;
    }
    if (this.failure !== undefined) {
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
      return;
    }
    if (this.allDone()) for (const w of this.waiters.splice(0)) w.resolve();
  }

  private outcome(id: string): PromptOutcome {
    let o = this.outcomes.get(id);
    if (!o) {
      o = {};
      this.outcomes.set(id, o);
    }
    return o;
  }

  private report(preview?: { bytes: Buffer; contentType: 'image/png' | 'image/jpeg' }): void {
    if (!this.options.onProgress || this.maxSteps <= 0) return;
    const done = this.tracked.filter((id) => this.finished(id)).length;
    const steps = this.maxSteps * this.total;
    this.options.onProgress({
      step: Math.min(steps, done * this.maxSteps + this.step),
      steps,
      ...(preview ? { preview } : {}),
    });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      // Preview frame: uint32 event (1 = PREVIEW_IMAGE), uint32 image type (1 JPEG, 2 PNG), bytes.
      if (data.length < 8 || data.readUInt32BE(0) !== 1 || !this.running) return;
      const bytes = data.subarray(8);
      const type = sniffImageType(bytes);
      if (type === 'image/png' || type === 'image/jpeg')
        this.report({ bytes: Buffer.from(bytes), contentType: type });
      return;
    }
    let message: { type?: unknown; data?: Record<string, unknown> };
    try {
      message = JSON.parse(data.toString('utf8'));
    } catch {
      return;
    }
    const d = message.data ?? {};
    const id = typeof d.prompt_id === 'string' ? d.prompt_id : undefined;
    switch (message.type) {
      case 'execution_start':
        if (id) {
          this.running = id;
          this.step = 0;
        }
        break;
      case 'progress':
        if (typeof d.value === 'number' && typeof d.max === 'number' && d.max > 0) {
          this.step = d.value;
          this.maxSteps = d.max;
          this.report();
        }
        break;
      case 'executing':
        if (id && d.node === null) this.complete(id);
        break;
      case 'execution_success':
        if (id) this.complete(id);
        break;
      case 'execution_error':
        if (id) {
          if (this.running === id) this.running = undefined;
          this.outcome(id).error = executionError(d, this.call.backend);
          this.check();
        }
        break;
      case 'execution_interrupted':
        if (id) {
          if (this.running === id) this.running = undefined;
          this.outcome(id).error = new ImagineError(
            'GENERATOR_UNAVAILABLE',
            `${this.call.backend} interrupted the workflow (someone pressed cancel on the server?)`,
          );
          this.check();
        }
        break;
      default:
        break;
    }
  }

  private complete(id: string): void {
    const o = this.outcome(id);
    if (o.done || o.error) return;
    o.done = true;
    if (this.running === id) this.running = undefined;
    this.step = 0;
    this.check();
  }
}

/** An `execution_error`: out of memory is worth another try (elsewhere); anything else is not. */
function executionError(d: Record<string, unknown>, backend: string): ImagineError {
  const type = String(d.exception_type ?? '');
  const message = String(d.exception_message ?? '')
    .trim()
    .slice(0, 300);
  const where = d.node_type ? ` in ${String(d.node_type)}` : '';
  const text = `${backend} failed${where}: ${type ? `${type}: ` : ''}${message}`;
  if (/OutOfMemory|out of memory/i.test(`${type} ${message}`))
    return new ImagineError('GENERATOR_UNAVAILABLE', text);
  return new ImagineError('GENERATION_FAILED', text);
}

/** ComfyUI's `/prompt` 400: `{error: {type, message, details}, node_errors: {id: {errors, class_type}}}`. */
function describeComfyError(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as {
      error?: { message?: unknown; details?: unknown } | string;
      node_errors?: Record<
        string,
        { class_type?: unknown; errors?: Array<{ message?: unknown; details?: unknown }> }
      >;
    };
    const top =
      typeof parsed.error === 'string'
        ? parsed.error
        : [parsed.error?.message, parsed.error?.details]
            .filter((s) => typeof s === 'string' && s)
            .join(': ');
    const nodes = Object.entries(parsed.node_errors ?? {}).flatMap(([id, n]) =>
      (n.errors ?? []).map(
        (e) =>
          `node ${id} (${String(n.class_type)}): ${String(e.message)}${e.details ? ` (${String(e.details)})` : ''}`,
      ),
    );
    return [top, ...nodes].filter(Boolean).join('; ');
  } catch {
    return undefined;
  }
}
