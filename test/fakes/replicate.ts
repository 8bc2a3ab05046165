/**
 * A local Replicate HTTP API as its reference documents it, for the adapter's tests:
 * `POST /v1/models/{owner}/{name}/predictions` (official models) and `POST /v1/predictions`
 * (`{version, input}`) answer 201 with a prediction (`id`, `status: starting`, `urls.get`,
 * `urls.cancel`, `logs`, `output: null`), inputs checked against each model's schema (422
 * `Input validation failed` with `invalid_fields`); `GET /v1/predictions/{id}` shows it go
 * `processing` (tqdm lines in `logs`) to `succeeded` (`output`: file URLs) or `failed`
 * (`error`); `POST .../cancel` makes it `canceled`; `POST /v1/files` (multipart `content`) and
 * `DELETE /v1/files/{id}`; Bearer auth (401 `Unauthenticated`), 404 for unknown models, 429 with
 * `Retry-After`. Bodies are `{title, detail, status}` problems.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import sharp from 'sharp';

/** How the fake misbehaves. */
export type ReplicateMode = 'ok' | 'nsfw' | 'oom' | 'throttle' | 'down' | 'stuck' | 'evil-output';

type Field =
  | { type: 'string'; required?: true; enum?: string[] }
  | { type: 'integer' | 'number'; min?: number; max?: number }
  | { type: 'boolean' }
  | { type: 'uri'; required?: true };

const ASPECTS = ['1:1', '16:9', '21:9', '3:2', '2:3', '4:5', '5:4', '3:4', '4:3', '9:16', '9:21'];
const MODELS: Record<string, Record<string, Field>> = {
  'black-forest-labs/flux-schnell': {
    prompt: { type: 'string', required: true },
    seed: { type: 'integer' },
    num_outputs: { type: 'integer', min: 1, max: 4 },
    num_inference_steps: { type: 'integer', min: 1, max: 4 },
    aspect_ratio: { type: 'string', enum: ASPECTS },
    output_format: { type: 'string', enum: ['webp', 'jpg', 'png'] },
    output_quality: { type: 'integer', min: 0, max: 100 },
    megapixels: { type: 'string', enum: ['1', '0.25'] },
    go_fast: { type: 'boolean' },
    disable_safety_checker: { type: 'boolean' },
  },
  'black-forest-labs/flux-dev': {
    prompt: { type: 'string', required: true },
    image: { type: 'uri' },
    prompt_strength: { type: 'number', min: 0, max: 1 },
    seed: { type: 'integer' },
    num_outputs: { type: 'integer', min: 1, max: 4 },
    num_inference_steps: { type: 'integer', min: 1, max: 50 },
    aspect_ratio: { type: 'string', enum: ASPECTS },
    output_format: { type: 'string', enum: ['webp', 'jpg', 'png'] },
    guidance: { type: 'number', min: 0, max: 10 },
  },
};
/** Versions (community models are run by version id). */
const VERSIONS: Record<string, Record<string, Field>> = {
  f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa: {
    image: { type: 'uri', required: true },
    scale: { type: 'number', min: 0, max: 10 },
    face_enhance: { type: 'boolean' },
  },
};

interface Prediction {
  id: string;
  model: string;
  version: string;
  input: Record<string, unknown>;
  logs: string;
  output: unknown;
  error: string | null;
  status: 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled';
  created_at: string;
  started_at?: string;
  completed_at?: string;
  urls: { get: string; cancel: string; web: string };
  metrics?: { predict_time: number };
}

/** A running fake Replicate API. */
export interface FakeReplicate {
  /** API base, like `https://api.replicate.com/v1`. */
  apiUrl: string;
  /** Origin of the file host outputs are served from (replicate.delivery's stand-in). */
  deliveryOrigin: string;
  token: string;
  mode: ReplicateMode;
  stepMs: number;
  /**
   * How long the answer to a prediction's creation takes to come back, the prediction already
   * running (a slow network: the server took the POST, the client has no id yet).
   */
  createAnswerMs: number;
  /** A prediction with this seed fails at once (NSFW), the others run as usual. */
  failSeed: number | undefined;
  predictions: Prediction[];
  files: Map<string, Buffer>;
  deletedFiles: string[];
  cancels: string[];
  /** Requests for output files, with whether they carried the token. */
  downloads: Array<{ path: string; authorized: boolean }>;
  close(): Promise<void>;
}

function problem(res: ServerResponse, status: number, title: string, detail: string, extra = {}) {
  res
    .writeHead(status, { 'content-type': 'application/problem+json' })
    .end(JSON.stringify({ title, detail, status, ...extra }));
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function checkInput(schema: Record<string, Field>, input: Record<string, unknown>) {
  const invalid: Array<{ type: string; field: string; description: string }> = [];
  for (const [name, f] of Object.entries(schema)) {
    const v = input[name];
    const field = `input.${name}`;
    if (v === undefined) {
      if ('required' in f && f.required)
        invalid.push({ type: 'required', field: 'input', description: `${name} is required` });
      continue;
    }
    if (f.type === 'string' || f.type === 'uri') {
      if (typeof v !== 'string')
        invalid.push({
          type: 'invalid_type',
          field,
          description: 'Invalid type. Expected: string, given: ' + typeof v,
        });
      else if (f.type === 'string' && f.enum && !f.enum.includes(v))
        invalid.push({
          type: 'enum',
          field,
          description: `${field} must be one of the following: ${f.enum.map((e) => `"${e}"`).join(', ')}`,
        });
      else if (f.type === 'uri' && !/^(https?:|data:)/.test(v))
        invalid.push({ type: 'format', field, description: "Does not match format 'uri'" });
    } else if (f.type === 'boolean') {
      if (typeof v !== 'boolean')
        invalid.push({
          type: 'invalid_type',
          field,
          description: 'Invalid type. Expected: boolean',
        });
    } else {
      if (typeof v !== 'number' || (f.type === 'integer' && !Number.isInteger(v)))
        invalid.push({
          type: 'invalid_type',
          field,
          description: `Invalid type. Expected: ${f.type}`,
        });
      else if (f.max !== undefined && v > f.max)
        invalid.push({
          type: 'less_than_equal',
          field,
          description: `Must be less than or equal to ${f.max}`,
        });
      else if (f.min !== undefined && v < f.min)
        invalid.push({
          type: 'greater_than_equal',
          field,
          description: `Must be greater than or equal to ${f.min}`,
        });
    }
  }
  return invalid;
}

/** Start the fake on 127.0.0.1:0. */
export async function startFakeReplicate(): Promise<FakeReplicate> {
  const fake: FakeReplicate = {
    apiUrl: '',
    deliveryOrigin: '',
    token: 'r8_test_token_0123456789',
    mode: 'ok',
    stepMs: 5,
    createAnswerMs: 0,
    failSeed: undefined,
    predictions: [],
    files: new Map(),
    deletedFiles: [],
    cancels: [],
    downloads: [],
    close: async () => {},
  };
  const outputs = new Map<string, Buffer>();
  let base = '';
  let deliveryBase = '';

  /** The model runs: steps in the logs, then an output file (or a failure). */
  async function run(p: Prediction): Promise<void> {
    if (fake.failSeed !== undefined && p.input.seed === fake.failSeed) {
      p.status = 'failed';
      p.error = 'NSFW content detected. Try running it again, or try a different prompt.';
      return;
    }
    await new Promise((r) => setTimeout(r, fake.stepMs));
    if (p.status === 'canceled') return;
    p.status = 'processing';
    p.started_at = new Date().toISOString();
    const steps = (p.input.num_inference_steps as number | undefined) ?? 4;
    p.logs = `Using seed: ${String(p.input.seed ?? 0)}\n`;
    for (let i = 1; i <= steps; i++) {
      if (fake.mode === 'stuck') await new Promise((r) => setTimeout(r, 60_000));
      await new Promise((r) => setTimeout(r, fake.stepMs));
      if (p.status !== 'processing') return;
      const pct = Math.round((i / steps) * 100);
      p.logs += `${String(pct).padStart(3)}%|${'█'.repeat(i)}${' '.repeat(steps - i)}| ${i}/${steps} [00:0${i}<00:00,  2.10it/s]\n`;
    }
    p.completed_at = new Date().toISOString();
    if (fake.mode === 'nsfw' || fake.mode === 'oom') {
      p.status = 'failed';
      p.error =
        fake.mode === 'nsfw'
          ? 'NSFW content detected. Try running it again, or try a different prompt.'
          : 'E1001: Model out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)';
      return;
    }
    // The input image must be one the model can download.
    let source: Buffer | undefined;
    if (typeof p.input.image === 'string') {
      const id = /\/v1\/files\/([^/]+)$/.exec(p.input.image)?.[1];
      source = id ? fake.files.get(id) : undefined;
      if (!source) {
        p.status = 'failed';
        p.error = `could not download file from ${p.input.image}`;
        return;
      }
    }
    let png: Buffer;
    if (p.version in VERSIONS) {
      const meta = await sharp(source!).metadata();
      const scale = (p.input.scale as number | undefined) ?? 4;
      png = await sharp(source!)
        .resize(Math.round(meta.width! * scale), Math.round(meta.height! * scale))
        .png()
        .toBuffer();
    } else {
      // Flux picks its own size: ~1 MP (or 0.25) at the aspect ratio, multiples of 16.
      const seed = (p.input.seed as number | undefined) ?? 0;
      let width: number;
      let height: number;
      if (source) {
        const meta = await sharp(source).metadata();
        width = meta.width!;
        height = meta.height!;
      } else {
        const [aw, ah] = String(p.input.aspect_ratio ?? '1:1')
          .split(':')
          .map(Number) as [number, number];
        const mp = p.input.megapixels === '0.25' ? 0.25 : 1;
        width = Math.round(Math.sqrt((mp * 1024 * 1024 * aw) / ah) / 16) * 16;
        height = Math.round((width * ah) / aw / 16) * 16;
      }
      png = await sharp({
        create: { width, height, channels: 3, background: { r: seed % 256, g: 80, b: 160 } },
      })
        .png()
        .toBuffer();
    }
    const name = `${p.id}/out-0.png`;
    outputs.set(name, png);
    const url =
      fake.mode === 'evil-output'
        ? `http://169.254.169.254/latest/meta-data/${name}`
        : `${deliveryBase}/delivery/${name}`;
    p.output = p.version in VERSIONS ? url : [url];
    p.status = 'succeeded';
    p.metrics = { predict_time: 0.1 };
  }

  async function create(
    res: ServerResponse,
    model: string,
    version: string,
    schema: Record<string, Field>,
    body: Record<string, unknown>,
  ) {
    const input = body.input;
    if (typeof input !== 'object' || input === null) {
      problem(res, 422, 'Input validation failed', '- input: Invalid type. Expected: object\n', {
        invalid_fields: [
          { type: 'invalid_type', field: 'input', description: 'Invalid type. Expected: object' },
        ],
      });
      return;
    }
    const invalid = checkInput(schema, input as Record<string, unknown>);
    if (invalid.length > 0) {
      problem(
        res,
        422,
        'Input validation failed',
        invalid.map((i) => `- ${i.field}: ${i.description}\n`).join(''),
        {
          invalid_fields: invalid,
        },
      );
      return;
    }
    const id = randomBytes(13)
      .toString('base64url')
      .toLowerCase()
      .replace(/[^a-z0-9]/g, 'x')
      .slice(0, 26);
    const p: Prediction = {
      id,
      model,
      version,
      input: input as Record<string, unknown>,
      logs: '',
      output: null,
      error: null,
      status: 'starting',
      created_at: new Date().toISOString(),
      urls: {
        get: `${base}/v1/predictions/${id}`,
        cancel: `${base}/v1/predictions/${id}/cancel`,
        web: `https://replicate.com/p/${id}`,
      },
    };
    fake.predictions.push(p);
    void run(p);
    if (fake.createAnswerMs > 0) await new Promise((r) => setTimeout(r, fake.createAnswerMs));
    if (!res.destroyed) json(res, 201, p);
  }

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const raw = req.method === 'POST' ? await readBody(req) : Buffer.alloc(0);
    const authorized = req.headers.authorization === `Bearer ${fake.token}`;
    if (!authorized)
      return problem(res, 401, 'Unauthenticated', 'You did not pass a valid authentication token');
    const route = `${req.method} ${url.pathname}`;
    const m1 = /^POST \/v1\/models\/([^/]+\/[^/]+)\/predictions$/.exec(route);
    if (m1) {
      if (fake.mode === 'throttle') {
        res.setHeader('retry-after', '2');
        return problem(
          res,
          429,
          'Request was throttled.',
          'Request was throttled. Expected available in 2 seconds.',
        );
      }
      if (fake.mode === 'down') {
        res
          .writeHead(503, { 'content-type': 'text/html' })
          .end('<html>503 Service Temporarily Unavailable</html>');
        return;
      }
      const schema = MODELS[m1[1]!];
      if (!schema)
        return problem(res, 404, 'Not found', 'The requested resource could not be found.');
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return problem(res, 400, 'Bad request', 'The request body is not valid JSON.');
      }
      await create(res, m1[1]!, 'official', schema, body);
      return;
    }
    if (route === 'POST /v1/predictions') {
      const body = JSON.parse(raw.toString('utf8')) as { version?: string; input?: unknown };
      const version = body.version?.split(':').at(-1) ?? '';
      const schema = VERSIONS[version];
      if (!schema)
        return problem(
          res,
          422,
          'Invalid version or not permitted',
          "The specified version does not exist (or perhaps you don't have permission to use it?)",
        );
      await create(
        res,
        'nightmareai/real-esrgan',
        version,
        schema,
        body as Record<string, unknown>,
      );
      return;
    }
    const m2 = /^GET \/v1\/predictions\/([^/]+)$/.exec(route);
    if (m2) {
      const p = fake.predictions.find((x) => x.id === m2![1]);
      return p
        ? json(res, 200, p)
        : problem(res, 404, 'Not found', 'The requested resource could not be found.');
    }
    const m3 = /^POST \/v1\/predictions\/([^/]+)\/cancel$/.exec(route);
    if (m3) {
      const p = fake.predictions.find((x) => x.id === m3![1]);
      if (!p) return problem(res, 404, 'Not found', 'The requested resource could not be found.');
      fake.cancels.push(p.id);
      if (p.status === 'starting' || p.status === 'processing') p.status = 'canceled';
      return json(res, 200, p);
    }
    if (route === 'POST /v1/files') {
      const form = await new Request('http://x/', {
        method: 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? '' },
        body: new Uint8Array(raw),
      })
        .formData()
        .catch(() => undefined);
      const content = form?.get('content');
      if (!(content instanceof File))
        return problem(res, 400, 'Bad request', 'content is required');
      const id = randomBytes(9).toString('hex');
      const bytes = Buffer.from(await content.arrayBuffer());
      fake.files.set(id, bytes);
      return json(res, 201, {
        id,
        name: content.name,
        content_type: content.type,
        size: bytes.length,
        etag: id,
        checksums: {},
        metadata: {},
        created_at: new Date().toISOString(),
        expires_at: new Date(Date.now() + 86_400_000).toISOString(),
        urls: { get: `${base}/v1/files/${id}` },
      });
    }
    const m4 = /^DELETE \/v1\/files\/([^/]+)$/.exec(route);
    if (m4) {
      fake.deletedFiles.push(m4[1]!);
      fake.files.delete(m4[1]!);
      res.writeHead(204).end();
      return;
    }
    problem(res, 404, 'Not found', 'The requested resource could not be found.');
  });
  // The file host: another origin, public, as replicate.delivery is.
  const files: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    fake.downloads.push({
      path: url.pathname,
      authorized: req.headers.authorization !== undefined,
    });
    const file =
      req.method === 'GET' ? outputs.get(url.pathname.replace(/^\/delivery\//, '')) : undefined;
    if (!file) return problem(res, 404, 'Not found', 'The requested resource could not be found.');
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': file.length }).end(file);
  });
  for (const s of [server, files])
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  deliveryBase = `http://127.0.0.1:${(files.address() as { port: number }).port}`;
  fake.apiUrl = `${base}/v1`;
  fake.deliveryOrigin = deliveryBase;
  fake.close = async () => {
    for (const s of [server, files])
      await new Promise<void>((resolve) => {
        s.closeAllConnections();
        s.close(() => resolve());
      });
  };
  return fake;
}
