/**
 * A local ComfyUI server as its server.py and execution.py behave, for the adapter's tests:
 * - `POST /prompt {prompt, client_id}` validates the API-format graph (unknown class_type →
 *   `invalid_prompt`; no output node → `prompt_no_outputs`; inputs checked per node: missing,
 *   wrong type, out of range, not in list, dangling links → 400 `prompt_outputs_failed_validation`
 *   with `node_errors`), then answers `{prompt_id, number, node_errors: {}}` and queues it;
 * - one prompt runs at a time; its events go to the WebSocket of its `client_id`
 *   (`/ws?clientId=`): `status` on connect, `execution_start`, `execution_cached`, `executing`
 *   per node, `progress {value, max}` per sampler step with a binary preview frame (uint32
 *   event 1, uint32 type 2 = PNG, bytes), `executed` with the SaveImage output, `executing
 *   {node: null}`, `execution_success`; failures are `execution_error`, an interrupt is
 *   `execution_interrupted`;
 * - `/history/{id}`, `/view?filename&subfolder&type`, `/upload/image` (multipart `image`,
 *   `type`, `subfolder`, `overwrite`), `/interrupt` (optionally `{prompt_id}`), `/queue {delete}`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import sharp from 'sharp';
import { type WebSocket, WebSocketServer } from 'ws';

/** How the fake misbehaves. */
export type ComfyMode = 'ok' | 'oom' | 'node-error' | 'ws-drop' | 'prompt-500' | 'hang';

type InputSpec =
  | { kind: 'link' }
  | { kind: 'INT' | 'FLOAT'; min: number; max: number }
  | { kind: 'STRING' }
  | { kind: 'LIST'; values: () => string[] };

interface NodeSpec {
  inputs: Record<string, InputSpec>;
  output?: true;
}

interface Prompt {
  id: string;
  number: number;
  graph: Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  clientId: string | undefined;
  outputs: string[];
}

/** A running fake ComfyUI. */
export interface FakeComfyUI {
  url: string;
  mode: ComfyMode;
  stepMs: number;
  /**
   * How long the answer to `POST /prompt` takes to come back, the prompt already queued (a slow
   * network: ComfyUI took it, the client has no prompt_id yet).
   */
  queueAnswerMs: number;
  /** A prompt sampling with this seed fails (a node exception); others run as usual. */
  failSeed: number | undefined;
  checkpoints: string[];
  /** Every graph queued, in order. */
  prompts: Prompt[];
  /** Uploaded inputs by their annotated name (`subfolder/name`). */
  uploads: Map<string, Buffer>;
  interrupts: Array<{ prompt_id?: string }>;
  deletes: string[][];
  /** Prompts that ran to the end. */
  finished: number;
  authorization: string | undefined;
  /** When set, a proxy in front answers 401 to any request without this `Authorization`. */
  requireAuth: string | undefined;
  close(): Promise<void>;
}

const LINK: InputSpec = { kind: 'link' };
const SAMPLERS = ['euler', 'euler_ancestral', 'dpmpp_2m', 'ddim'];
const SCHEDULERS = ['normal', 'karras', 'simple', 'sgm_uniform'];

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Start the fake on 127.0.0.1:0. */
export async function startFakeComfyUI(): Promise<FakeComfyUI> {
  const fake: FakeComfyUI = {
    url: '',
    mode: 'ok',
    stepMs: 5,
    queueAnswerMs: 0,
    failSeed: undefined,
    checkpoints: ['flux1-schnell-fp8.safetensors', 'sd_xl_base_1.0.safetensors'],
    prompts: [],
    uploads: new Map(),
    interrupts: [],
    deletes: [],
    finished: 0,
    authorization: undefined,
    requireAuth: undefined,
    close: async () => {},
  };
  const NODES: Record<string, NodeSpec> = {
    CheckpointLoaderSimple: {
      inputs: { ckpt_name: { kind: 'LIST', values: () => fake.checkpoints } },
    },
    CLIPTextEncode: { inputs: { text: { kind: 'STRING' }, clip: LINK } },
    EmptySD3LatentImage: {
      inputs: {
        width: { kind: 'INT', min: 16, max: 16384 },
        height: { kind: 'INT', min: 16, max: 16384 },
        batch_size: { kind: 'INT', min: 1, max: 4096 },
      },
    },
    EmptyLatentImage: {
      inputs: {
        width: { kind: 'INT', min: 16, max: 16384 },
        height: { kind: 'INT', min: 16, max: 16384 },
        batch_size: { kind: 'INT', min: 1, max: 4096 },
      },
    },
    KSampler: {
      inputs: {
        model: LINK,
        positive: LINK,
        negative: LINK,
        latent_image: LINK,
        seed: { kind: 'INT', min: 0, max: Number.MAX_SAFE_INTEGER },
        steps: { kind: 'INT', min: 1, max: 10000 },
        cfg: { kind: 'FLOAT', min: 0, max: 100 },
        sampler_name: { kind: 'LIST', values: () => SAMPLERS },
        scheduler: { kind: 'LIST', values: () => SCHEDULERS },
        denoise: { kind: 'FLOAT', min: 0, max: 1 },
      },
    },
    VAEDecode: { inputs: { samples: LINK, vae: LINK } },
    VAEEncode: { inputs: { pixels: LINK, vae: LINK } },
    LoadImage: { inputs: { image: { kind: 'LIST', values: () => [...fake.uploads.keys()] } } },
    ImageScale: {
      inputs: {
        image: LINK,
        upscale_method: {
          kind: 'LIST',
          values: () => ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos'],
        },
        width: { kind: 'INT', min: 0, max: 16384 },
        height: { kind: 'INT', min: 0, max: 16384 },
        crop: { kind: 'LIST', values: () => ['disabled', 'center'] },
      },
    },
    RepeatLatentBatch: { inputs: { samples: LINK, amount: { kind: 'INT', min: 1, max: 64 } } },
    SaveImage: { inputs: { images: LINK, filename_prefix: { kind: 'STRING' } }, output: true },
    PreviewImage: { inputs: { images: LINK }, output: true },
  };

  const sockets = new Map<string, WebSocket>();
  const queue: Prompt[] = [];
  const history = new Map<string, Record<string, unknown>>();
  const files = new Map<string, Buffer>();
  let number = 0;
  let running: Prompt | undefined;
  let interrupted = false;
  let wake: (() => void) | undefined;

  const send = (p: Prompt, type: string, data: Record<string, unknown>) =>
    p.clientId && sockets.get(p.clientId)?.send(JSON.stringify({ type, data }));
  const sendBinary = (p: Prompt, bytes: Buffer) => {
    const header = Buffer.alloc(8);
    header.writeUInt32BE(1, 0); // PREVIEW_IMAGE
    header.writeUInt32BE(2, 4); // PNG
    if (p.clientId) sockets.get(p.clientId)?.send(Buffer.concat([header, bytes]));
  };

  type NodeError = {
    type: string;
    message: string;
    details: string;
    extra_info: Record<string, unknown>;
  };
  function validateNode(id: string, graph: Prompt['graph']): NodeError[] {
    const node = graph[id]!;
    const spec = NODES[node.class_type]!;
    const errors: NodeError[] = [];
    for (const [name, input] of Object.entries(spec.inputs)) {
      const value = node.inputs[name];
      if (value === undefined) {
        errors.push({
          type: 'required_input_missing',
          message: 'Required input is missing',
          details: name,
          extra_info: { input_name: name },
        });
        continue;
      }
      if (input.kind === 'link') {
        if (!Array.isArray(value) || typeof value[0] !== 'string' || !graph[value[0]])
          errors.push({
            type: 'bad_linked_input',
            message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
            details: `${name}, ${JSON.stringify(value)}`,
            extra_info: { input_name: name },
          });
        continue;
      }
      if (input.kind === 'INT' || input.kind === 'FLOAT') {
        const ok = typeof value === 'number' && (input.kind === 'FLOAT' || Number.isInteger(value));
        if (!ok) {
          errors.push({
            type: 'invalid_input_type',
            message: `Failed to convert an input value to a ${input.kind} value`,
            details: `${name}, ${String(value)}`,
            extra_info: { input_name: name },
          });
        } else if (value < input.min) {
          errors.push({
            type: 'value_smaller_than_min',
            message: `Value ${value} smaller than min of ${input.min}`,
            details: `${name}`,
            extra_info: { input_name: name },
          });
        } else if (value > input.max) {
          errors.push({
            type: 'value_bigger_than_max',
            message: `Value ${value} bigger than max of ${input.max}`,
            details: `${name}`,
            extra_info: { input_name: name },
          });
        }
        continue;
      }
      if (input.kind === 'STRING') {
        if (typeof value !== 'string')
          errors.push({
            type: 'invalid_input_type',
            message: 'Failed to convert an input value to a STRING value',
            details: `${name}, ${String(value)}`,
            extra_info: { input_name: name },
          });
        continue;
      }
      const values = (input as { values: () => string[] }).values();
      if (typeof value !== 'string' || !values.includes(value))
        errors.push({
          type: 'value_not_in_list',
          message: 'Value not in list',
          details: `${name}: '${String(value)}' not in ${JSON.stringify(values)}`,
          extra_info: { input_name: name },
        });
    }
    return errors;
  }

  /** execution.validate_prompt: first error wins for unknown nodes, else node_errors. */
  function validate(
    graph: unknown,
  ): { ok: true; outputs: string[] } | { ok: false; body: unknown } {
    if (typeof graph !== 'object' || graph === null || Array.isArray(graph))
      return {
        ok: false,
        body: {
          error: {
            type: 'invalid_prompt',
            message: 'Cannot execute because the prompt is not an object',
            details: '',
            extra_info: {},
          },
          node_errors: {},
        },
      };
    const g = graph as Prompt['graph'];
    for (const [id, node] of Object.entries(g)) {
      if (!node || typeof node.class_type !== 'string')
        return {
          ok: false,
          body: {
            error: {
              type: 'invalid_prompt',
              message: `Cannot execute because a node is missing the class_type property.`,
              details: `Node ID '#${id}'`,
              extra_info: {},
            },
            node_errors: {},
          },
        };
      if (!NODES[node.class_type])
        return {
          ok: false,
          body: {
            error: {
              type: 'invalid_prompt',
              message: `Cannot execute because node ${node.class_type} does not exist.`,
              details: `Node ID '#${id}'`,
              extra_info: {},
            },
            node_errors: {},
          },
        };
    }
    const outputs = Object.keys(g).filter((id) => NODES[g[id]!.class_type]!.output);
    if (outputs.length === 0)
      return {
        ok: false,
        body: {
          error: {
            type: 'prompt_no_outputs',
            message: 'Prompt has no outputs',
            details: '',
            extra_info: {},
          },
          node_errors: {},
        },
      };
    const nodeErrors: Record<string, unknown> = {};
    for (const id of Object.keys(g)) {
      const errors = validateNode(id, g);
      if (errors.length > 0)
        nodeErrors[id] = { errors, dependent_outputs: outputs, class_type: g[id]!.class_type };
    }
    if (Object.keys(nodeErrors).length > 0)
      return {
        ok: false,
        body: {
          error: {
            type: 'prompt_outputs_failed_validation',
            message: 'Prompt outputs failed validation',
            details: '',
            extra_info: {},
          },
          node_errors: nodeErrors,
        },
      };
    return { ok: true, outputs };
  }

  /** What the graph makes: size, batch, seed, steps (a simplified evaluation). */
  function plan(p: Prompt) {
    const nodes = Object.values(p.graph);
    const sampler = nodes.find((n) => n.class_type === 'KSampler')!;
    const latent = nodes.find((n) => n.class_type.startsWith('Empty'));
    const scale = nodes.find((n) => n.class_type === 'ImageScale');
    const repeat = nodes.find((n) => n.class_type === 'RepeatLatentBatch');
    const size = (latent ?? scale)?.inputs as
      | { width?: number; height?: number; batch_size?: number }
      | undefined;
    return {
      width: size?.width ?? 512,
      height: size?.height ?? 512,
      batch:
        (latent?.inputs.batch_size as number | undefined) ??
        (repeat?.inputs.amount as number | undefined) ??
        1,
      seed: sampler.inputs.seed as number,
      steps: sampler.inputs.steps as number,
      samplerId: Object.keys(p.graph).find((k) => p.graph[k] === sampler)!,
    };
  }

  async function execute(p: Prompt): Promise<void> {
    const messages: unknown[] = [];
    const done = (status: string) =>
      history.set(p.id, {
        prompt: [p.number, p.id, p.graph, { client_id: p.clientId }, p.outputs],
        outputs: status === 'success' ? (outputsOf.get(p.id) ?? {}) : {},
        status: { status_str: status, completed: status === 'success', messages },
        meta: {},
      });
    const outputsOf = new Map<string, Record<string, unknown>>();
    send(p, 'execution_start', { prompt_id: p.id, timestamp: Date.now() });
    send(p, 'execution_cached', { nodes: [], prompt_id: p.id, timestamp: Date.now() });
    const { width, height, batch, seed, steps, samplerId } = plan(p);
    for (const id of Object.keys(p.graph)) {
      const node = p.graph[id]!;
      send(p, 'executing', { node: id, display_node: id, prompt_id: p.id });
      if (id === samplerId) {
        for (let step = 1; step <= steps; step++) {
          await new Promise((r) => setTimeout(r, fake.stepMs));
          if (interrupted) {
            send(p, 'execution_interrupted', {
              prompt_id: p.id,
              node_id: id,
              node_type: node.class_type,
              executed: [],
              timestamp: Date.now(),
            });
            done('error');
            return;
          }
          if (fake.mode === 'oom' || fake.mode === 'node-error' || seed === fake.failSeed) {
            send(p, 'execution_error', {
              prompt_id: p.id,
              node_id: id,
              node_type: node.class_type,
              executed: [],
              exception_message:
                fake.mode === 'oom'
                  ? 'Allocation on device 0 would exceed allowed memory. (out of memory)'
                  : 'mat1 and mat2 shapes cannot be multiplied (1x768 and 4096x3072)',
              exception_type: fake.mode === 'oom' ? 'torch.OutOfMemoryError' : 'RuntimeError',
              traceback: ['  File "execution.py", line 1, in execute\n'],
              current_inputs: {},
              current_outputs: {},
              timestamp: Date.now(),
            });
            done('error');
            return;
          }
          send(p, 'progress', { value: step, max: steps, prompt_id: p.id, node: id });
          sendBinary(
            p,
            await sharp({
              create: {
                width: 8,
                height: 8,
                channels: 3,
                background: { r: step * 20, g: 0, b: 0 },
              },
            })
              .png()
              .toBuffer(),
          );
          if (fake.mode === 'ws-drop' && p.clientId) {
            sockets.get(p.clientId)?.terminate();
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      }
      if (node.class_type === 'SaveImage' || node.class_type === 'PreviewImage') {
        const type = node.class_type === 'SaveImage' ? 'output' : 'temp';
        const images = [];
        for (let i = 0; i < batch; i++) {
          const filename = `${String(node.inputs.filename_prefix ?? 'ComfyUI')}_${String(files.size + 1).padStart(5, '0')}_.png`;
          const png = await sharp({
            create: {
              width,
              height,
              channels: 3,
              background: { r: seed % 256, g: (seed >>> 8) % 256, b: i * 60 },
            },
          })
            .png()
            .toBuffer();
          files.set(`${type}//${filename}`, png);
          images.push({ filename, subfolder: '', type });
        }
        outputsOf.set(p.id, { ...(outputsOf.get(p.id) ?? {}), [id]: { images } });
        send(p, 'executed', { node: id, display_node: id, output: { images }, prompt_id: p.id });
      }
    }
    send(p, 'executing', { node: null, prompt_id: p.id });
    send(p, 'execution_success', { prompt_id: p.id, timestamp: Date.now() });
    fake.finished++;
    done('success');
  }

  async function runQueue(): Promise<void> {
    for (;;) {
      const next = queue.shift();
      if (!next) {
        await new Promise<void>((r) => {
          wake = r;
        });
        continue;
      }
      if (fake.mode === 'hang') {
        // Never starts: stays pending, as behind someone else's long job.
        queue.unshift(next);
        await new Promise<void>((r) => {
          wake = r;
        });
        continue;
      }
      running = next;
      interrupted = false;
      try {
        await execute(next);
      } finally {
        running = undefined;
      }
    }
  }

  const server: Server = createServer(async (req, res) => {
    fake.authorization = req.headers.authorization;
    if (fake.requireAuth && req.headers.authorization !== fake.requireAuth) {
      res.writeHead(401, { 'www-authenticate': 'Bearer' }).end('401 Unauthorized');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const route = `${req.method} ${url.pathname.replace(/^\/api\//, '/')}`;
    const raw = req.method === 'POST' ? await readBody(req) : Buffer.alloc(0);
    const parseJson = (): unknown => {
      if (raw.length === 0) return {};
      return JSON.parse(raw.toString('utf8'));
    };
    try {
      if (route === 'POST /prompt') {
        if (fake.mode === 'prompt-500') {
          res
            .writeHead(500, { 'content-type': 'text/plain' })
            .end('500 Internal Server Error\n\nServer got itself in trouble');
          return;
        }
        const body = parseJson() as { prompt?: unknown; client_id?: unknown };
        if (!('prompt' in body)) {
          json(res, 400, { error: 'no prompt', node_errors: [] });
          return;
        }
        const checked = validate(body.prompt);
        if (!checked.ok) {
          json(res, 400, checked.body);
          return;
        }
        const p: Prompt = {
          id: randomUUID(),
          number: number++,
          graph: body.prompt as Prompt['graph'],
          clientId: typeof body.client_id === 'string' ? body.client_id : undefined,
          outputs: checked.outputs,
        };
        fake.prompts.push(p);
        queue.push(p);
        wake?.();
        if (fake.queueAnswerMs > 0) await new Promise((r) => setTimeout(r, fake.queueAnswerMs));
        if (!res.destroyed) json(res, 200, { prompt_id: p.id, number: p.number, node_errors: {} });
        return;
      }
      if (route === 'POST /interrupt') {
        const body = parseJson() as { prompt_id?: string };
        fake.interrupts.push(body);
        if (running && (!body.prompt_id || body.prompt_id === running.id)) interrupted = true;
        res.writeHead(200).end();
        return;
      }
      if (route === 'POST /queue') {
        const body = parseJson() as { delete?: string[]; clear?: boolean };
        if (body.delete) {
          fake.deletes.push(body.delete);
          for (const id of body.delete) {
            const i = queue.findIndex((p) => p.id === id);
            if (i >= 0) queue.splice(i, 1);
          }
        }
        res.writeHead(200).end();
        return;
      }
      if (route === 'POST /upload/image') {
        const form = await new Request('http://x/', {
          method: 'POST',
          headers: { 'content-type': req.headers['content-type'] ?? '' },
          body: new Uint8Array(raw),
        }).formData();
        const image = form.get('image');
        if (!(image instanceof File) || !image.name) {
          res.writeHead(400).end();
          return;
        }
        const subfolder = String(form.get('subfolder') ?? '');
        if (subfolder.includes('..') || image.name.includes('/')) {
          res.writeHead(400).end();
          return;
        }
        const name = subfolder ? `${subfolder}/${image.name}` : image.name;
        fake.uploads.set(name, Buffer.from(await image.arrayBuffer()));
        json(res, 200, { name: image.name, subfolder, type: String(form.get('type') ?? 'input') });
        return;
      }
      const historyMatch = /^GET \/history\/([^/]+)$/.exec(route);
      if (historyMatch) {
        const id = decodeURIComponent(historyMatch[1]!);
        const h = history.get(id);
        json(res, 200, h ? { [id]: h } : {});
        return;
      }
      if (route === 'GET /view') {
        const filename = url.searchParams.get('filename');
        if (!filename) {
          res.writeHead(404).end();
          return;
        }
        if (filename.startsWith('/') || filename.includes('..')) {
          res.writeHead(400).end();
          return;
        }
        const type = url.searchParams.get('type') ?? 'output';
        const file = files.get(`${type}/${url.searchParams.get('subfolder') ?? ''}/${filename}`);
        if (!file) {
          res.writeHead(404).end();
          return;
        }
        res
          .writeHead(200, {
            'content-type': 'image/png',
            'content-disposition': `filename="${filename}"`,
          })
          .end(file);
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('404: Not Found');
    } catch (err) {
      // aiohttp answers a handler's exception (bad JSON included) with a 500.
      res
        .writeHead(500, { 'content-type': 'text/plain' })
        .end(`500 Internal Server Error: ${(err as Error).message}`);
    }
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/ws') {
      socket.destroy();
      return;
    }
    if (fake.requireAuth && req.headers.authorization !== fake.requireAuth) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const sid = url.searchParams.get('clientId') || randomUUID().replace(/-/g, '');
      sockets.set(sid, ws);
      ws.on('close', () => {
        if (sockets.get(sid) === ws) sockets.delete(sid);
      });
      ws.send(
        JSON.stringify({
          type: 'status',
          data: {
            status: { exec_info: { queue_remaining: queue.length + (running ? 1 : 0) } },
            sid,
          },
        }),
      );
    });
  });

  void runQueue();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  fake.url = `http://127.0.0.1:${port}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fake;
}
