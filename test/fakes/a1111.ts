/**
 * A local AUTOMATIC1111 / Forge web UI started with `--api` (and optionally `--api-auth`), as its
 * modules/api/api.py behaves: `/sdapi/v1/txt2img`, `/img2img`, `/extra-single-image` answer
 * `{images|image, parameters, info}` with base64 images and `info` a JSON string carrying
 * `all_seeds` (seed, seed+1, ... for a batch); one generation at a time behind a queue lock;
 * `/sdapi/v1/progress` reports the global state (`job_count`, `sampling_step`, ...) with a
 * base64 `current_image`; `/sdapi/v1/interrupt` stops the running one, which then answers with
 * what it had. Errors: FastAPI's 422 `{detail:[...]}` for bodies that do not validate, the API's
 * own `{error, detail, body, errors}` with 404/500, 401 with `WWW-Authenticate: Basic`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import sharp from 'sharp';

/** How the fake misbehaves. */
export type A1111Mode = 'ok' | 'oom' | 'garbage' | 'huge' | 'hang' | 'drop' | 'html';

/** One request the fake saw. */
export interface A1111Seen {
  method: string;
  path: string;
  body: Record<string, unknown> | undefined;
  authorization: string | undefined;
}

/** A running fake A1111. */
export interface FakeA1111 {
  url: string;
  /** `user:password` required when set (`--api-auth`). */
  auth: string | undefined;
  mode: A1111Mode;
  /** Time one sampling step takes, ms. */
  stepMs: number;
  samplers: string[];
  upscalers: string[];
  seen: A1111Seen[];
  /** Most generations ever running at once (the queue lock keeps it at 1). */
  maxRunning: number;
  interrupts: number;
  /** Generations that ran to their last step. */
  finished: number;
  /** Sever every connection and stop listening (the server "dies"). */
  kill(): void;
  close(): Promise<void>;
}

const SAMPLERS = ['Euler', 'Euler a', 'DPM++ 2M', 'DDIM'];
const UPSCALERS = ['None', 'Lanczos', 'R-ESRGAN 4x+'];

interface State {
  job_count: number;
  job_no: number;
  sampling_step: number;
  sampling_steps: number;
  interrupted: boolean;
  skipped: boolean;
  job: string;
  job_timestamp: string;
  current: Buffer | undefined;
}

function json(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  res
    .writeHead(status, { 'content-type': 'application/json', ...headers })
    .end(JSON.stringify(body));
}

/** The API's own exception handler: `{error, detail, body, errors}`. */
function apiError(res: ServerResponse, status: number, error: string, detail: string, errors = '') {
  json(res, status, { error, detail, body: '', errors });
}

/** FastAPI's request-validation answer. */
function invalid(res: ServerResponse, loc: string[], msg: string, type: string) {
  json(res, 422, { detail: [{ loc: ['body', ...loc], msg, type }] });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function png(width: number, height: number, seed: number): Promise<Buffer> {
  return sharp({
    create: {
      width,
      height,
      channels: 3,
      background: { r: seed % 256, g: (seed >>> 8) % 256, b: 150 },
    },
  })
    .png()
    .toBuffer();
}

/** Validate the fields of a processing request the way its pydantic model does. */
function validate(
  body: Record<string, unknown>,
  res: ServerResponse,
  fields: Record<string, 'str' | 'int' | 'float' | 'bool' | 'list' | 'dict'>,
): boolean {
  for (const [key, type] of Object.entries(fields)) {
    const v = body[key];
    if (v === undefined || v === null) continue;
    const ok =
      type === 'str'
        ? typeof v === 'string'
        : type === 'int'
          ? Number.isInteger(v)
          : type === 'float'
            ? typeof v === 'number'
            : type === 'bool'
              ? typeof v === 'boolean'
              : type === 'list'
                ? Array.isArray(v)
                : typeof v === 'object' && !Array.isArray(v);
    if (!ok) {
      invalid(res, [key], `value is not a valid ${type}`, `type_error.${type}`);
      return false;
    }
  }
  return true;
}

const PROCESSING_FIELDS = {
  prompt: 'str',
  negative_prompt: 'str',
  seed: 'int',
  steps: 'int',
  width: 'int',
  height: 'int',
  batch_size: 'int',
  n_iter: 'int',
  cfg_scale: 'float',
  sampler_name: 'str',
  scheduler: 'str',
  override_settings: 'dict',
  override_settings_restore_afterwards: 'bool',
  send_images: 'bool',
  save_images: 'bool',
  init_images: 'list',
  denoising_strength: 'float',
} as const;

function decodeImage(encoding: string): Buffer | undefined {
  const data = encoding.startsWith('data:image/') ? encoding.split(',')[1]! : encoding;
  const bytes = Buffer.from(data, 'base64');
  return bytes.length > 8 && bytes[0] === 0x89 && bytes[1] === 0x50 ? bytes : undefined;
}

/** Start the fake on 127.0.0.1:0. */
export async function startFakeA1111(opts: { auth?: string } = {}): Promise<FakeA1111> {
  const fake: FakeA1111 = {
    url: '',
    auth: opts.auth,
    mode: 'ok',
    stepMs: 5,
    samplers: SAMPLERS,
    upscalers: UPSCALERS,
    seen: [],
    maxRunning: 0,
    interrupts: 0,
    finished: 0,
    kill: () => {},
    close: async () => {},
  };
  const state: State = {
    job_count: 0,
    job_no: 0,
    sampling_step: 0,
    sampling_steps: 0,
    interrupted: false,
    skipped: false,
    job: '',
    job_timestamp: '0',
    current: undefined,
  };
  let running = 0;
  let lock: Promise<void> = Promise.resolve();

  /** Run one generation under the queue lock, as `with self.queue_lock:` does. */
  async function locked<T>(fn: () => Promise<T>): Promise<T> {
    const before = lock;
    let release!: () => void;
    lock = new Promise((r) => {
      release = r;
    });
    await before;
    running++;
    fake.maxRunning = Math.max(fake.maxRunning, running);
    try {
      return await fn();
    } finally {
      running--;
      release();
    }
  }

  /** Sample `steps` steps for `batch` images; stops early on interrupt. */
  async function sample(job: string, steps: number, width: number, height: number, seed: number) {
    Object.assign(state, {
      job,
      job_count: 1,
      job_no: 0,
      sampling_step: 0,
      sampling_steps: steps,
      interrupted: false,
      job_timestamp: String(Date.now()),
      current: undefined,
    });
    try {
      for (let step = 1; step <= steps; step++) {
        await new Promise((r) => setTimeout(r, fake.stepMs));
        if (state.interrupted) return;
        state.sampling_step = step;
        state.current = await png(8, 8, seed + step);
      }
      fake.finished++;
    } finally {
      void width;
      void height;
      Object.assign(state, {
        job_count: 0,
        sampling_step: 0,
        sampling_steps: 0,
        current: undefined,
      });
    }
  }

  async function misbehave(res: ServerResponse): Promise<boolean> {
    switch (fake.mode) {
      case 'oom':
        apiError(
          res,
          500,
          'OutOfMemoryError',
          '',
          'CUDA out of memory. Tried to allocate 2.00 GiB',
        );
        return true;
      case 'garbage':
        json(res, 200, { images: ['bm90IGFuIGltYWdl'], parameters: {}, info: '{}' });
        return true;
      case 'huge':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"images":["${'A'.repeat(6 * 1024 * 1024)}"],"parameters":{},"info":"{}"}`);
        return true;
      case 'hang':
        return true;
      case 'drop':
        res.socket?.destroy();
        return true;
      case 'html':
        res
          .writeHead(502, { 'content-type': 'text/html' })
          .end('<html><body>502 Bad Gateway</body></html>');
        return true;
      default:
        return false;
    }
  }

  async function processing(
    path: 'txt2img' | 'img2img',
    body: Record<string, unknown>,
    res: ServerResponse,
  ): Promise<void> {
    if (!validate(body, res, PROCESSING_FIELDS)) return;
    const sampler = (body.sampler_name as string | undefined) ?? 'Euler';
    if (!fake.samplers.includes(sampler)) {
      apiError(res, 404, 'HTTPException', 'Sampler not found');
      return;
    }
    let init: Buffer[] = [];
    if (path === 'img2img') {
      if (!Array.isArray(body.init_images)) {
        apiError(res, 404, 'HTTPException', 'Init image not found');
        return;
      }
      const decoded = body.init_images.map((s) =>
        typeof s === 'string' ? decodeImage(s) : undefined,
      );
      if (decoded.some((d) => !d)) {
        apiError(res, 500, 'HTTPException', 'Invalid encoded image');
        return;
      }
      init = decoded as Buffer[];
      const strength = body.denoising_strength;
      if (typeof strength === 'number' && (strength < 0 || strength > 1)) {
        invalid(res, ['denoising_strength'], 'ensure this value is between 0 and 1', 'value_error');
        return;
      }
    }
    void init;
    const seed = (body.seed as number | undefined) ?? -1;
    const batch = (body.batch_size as number | undefined) ?? 1;
    const steps = (body.steps as number | undefined) ?? 50;
    const width = (body.width as number | undefined) ?? 512;
    const height = (body.height as number | undefined) ?? 512;
    const base = seed === -1 ? 1234 : seed;
    await locked(async () => {
      if (await misbehave(res)) return;
      await sample(`scripts_${path}`, steps, width, height, base);
      if (res.destroyed) return;
      const seeds = Array.from({ length: batch }, (_, i) => base + i);
      const images = await Promise.all(seeds.map((s) => png(width, height, s)));
      const send = body.send_images !== false;
      json(res, 200, {
        images: send ? images.map((b) => b.toString('base64')) : [],
        parameters: body,
        info: JSON.stringify({
          prompt: body.prompt,
          seed: base,
          all_seeds: seeds,
          width,
          height,
          sampler_name: sampler,
          steps,
          batch_size: batch,
        }),
      });
    });
  }

  async function extras(body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    if (typeof body.image !== 'string') {
      invalid(res, ['image'], 'field required', 'value_error.missing');
      return;
    }
    const input = decodeImage(body.image);
    if (!input) {
      apiError(res, 500, 'HTTPException', 'Invalid encoded image');
      return;
    }
    const upscaler = (body.upscaler_1 as string | undefined) ?? 'None';
    if (!fake.upscalers.includes(upscaler)) {
      apiError(res, 500, 'AssertionError', '', `could not find upscaler named ${upscaler}`);
      return;
    }
    await locked(async () => {
      if (await misbehave(res)) return;
      const meta = await sharp(input).metadata();
      const byScale = body.resize_mode !== 1;
      const factor = (body.upscaling_resize as number | undefined) ?? 2;
      const width = byScale
        ? Math.round(meta.width! * factor)
        : (body.upscaling_resize_w as number);
      const height = byScale
        ? Math.round(meta.height! * factor)
        : (body.upscaling_resize_h as number);
      const out = await sharp(input).resize(width, height, { fit: 'cover' }).png().toBuffer();
      json(res, 200, { html_info: `<p>${upscaler}</p>`, image: out.toString('base64') });
    });
  }

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const text = req.method === 'POST' ? await readBody(req) : '';
    let body: Record<string, unknown> | undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        fake.seen.push({
          method: req.method ?? '',
          path: url.pathname,
          body: undefined,
          authorization: req.headers.authorization,
        });
        json(res, 422, {
          detail: [{ loc: ['body', 0], msg: 'Expecting value', type: 'value_error.jsondecode' }],
        });
        return;
      }
    }
    fake.seen.push({
      method: req.method ?? '',
      path: url.pathname,
      body,
      authorization: req.headers.authorization,
    });
    if (fake.auth) {
      const [scheme, value] = (req.headers.authorization ?? '').split(' ');
      const given = scheme === 'Basic' && value ? Buffer.from(value, 'base64').toString() : '';
      if (!given) {
        json(res, 401, { detail: 'Not authenticated' }, { 'www-authenticate': 'Basic' });
        return;
      }
      if (given !== fake.auth) {
        json(
          res,
          401,
          {
            error: 'HTTPException',
            detail: 'Incorrect username or password',
            body: '',
            errors: '',
          },
          { 'www-authenticate': 'Basic' },
        );
        return;
      }
    }
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'POST /sdapi/v1/txt2img':
      case 'POST /sdapi/v1/img2img':
        await processing(url.pathname.endsWith('txt2img') ? 'txt2img' : 'img2img', body ?? {}, res);
        return;
      case 'POST /sdapi/v1/extra-single-image':
        await extras(body ?? {}, res);
        return;
      case 'GET /sdapi/v1/progress': {
        const dict = {
          skipped: state.skipped,
          interrupted: state.interrupted,
          stopping_generation: false,
          job: state.job,
          job_count: state.job_count,
          job_timestamp: state.job_timestamp,
          job_no: state.job_no,
          sampling_step: state.sampling_step,
          sampling_steps: state.sampling_steps,
        };
        if (state.job_count === 0) {
          json(res, 200, { progress: 0, eta_relative: 0, state: dict, textinfo: null });
          return;
        }
        let progress = 0.01 + state.job_no / state.job_count;
        if (state.sampling_steps > 0)
          progress += (1 / state.job_count) * (state.sampling_step / state.sampling_steps);
        const skip = url.searchParams.get('skip_current_image') === 'true';
        json(res, 200, {
          progress: Math.min(progress, 1),
          eta_relative: 1,
          state: dict,
          current_image: state.current && !skip ? state.current.toString('base64') : null,
          textinfo: null,
        });
        return;
      }
      case 'POST /sdapi/v1/interrupt':
        fake.interrupts++;
        if (state.job_count > 0) state.interrupted = true;
        json(res, 200, {});
        return;
      case 'GET /sdapi/v1/samplers':
        json(
          res,
          200,
          fake.samplers.map((name) => ({ name, aliases: [], options: {} })),
        );
        return;
      default:
        json(res, 404, { detail: 'Not Found' });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  fake.url = `http://127.0.0.1:${port}`;
  fake.kill = () => {
    server.closeAllConnections();
    server.close();
  };
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fake;
}
