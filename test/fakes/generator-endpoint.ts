/**
 * A local stand-in for the Flux endpoint on Modal (which cannot be reached from here): the same
 * HTTP contract as worker/modal/flux_app.py — POST JSON {prompt, width, height, seed, steps} with
 * Modal-Key / Modal-Secret proxy-auth headers, answered with image bytes — plus switchable
 * misbehaviours for tests.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import sharp from 'sharp';

/** How the fake answers the next requests. */
export type FakeMode = 'ok' | 'slow' | 'garbage' | 'huge' | 'unavailable' | 'fail-once';

/** A running fake generator endpoint. */
export interface FakeGeneratorEndpoint {
  url: string;
  key: string;
  secret: string;
  mode: FakeMode;
  /** Extra time every answer takes, ms. */
  delayMs: number;
  /** Most requests ever in flight at once. */
  maxInFlight: number;
  requests: Array<{ body: Record<string, unknown>; headers: IncomingMessage['headers'] }>;
  /** Configuration that points a worker at this fake (`GENERATOR=http`). */
  env(): Record<string, string>;
  /** How many generations of `prompt` were started. */
  started(prompt: string): number;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Start the fake on 127.0.0.1:0. */
export async function startFakeGenerator(): Promise<FakeGeneratorEndpoint> {
  const state: FakeGeneratorEndpoint = {
    url: '',
    key: 'wk-test-key',
    secret: 'ws-test-secret',
    mode: 'ok',
    delayMs: 0,
    maxInFlight: 0,
    requests: [],
    env: () => ({
      GENERATOR: 'http',
      MODAL_FLUX_URL: state.url,
      MODAL_KEY: state.key,
      MODAL_SECRET: state.secret,
    }),
    started: (prompt) => state.requests.filter((r) => r.body.prompt === prompt).length,
    close: async () => {},
  };
  let failedOnce = false;
  let inFlight = 0;
  const server: Server = createServer(async (req, res) => {
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    res.once('close', () => inFlight--);
    const text = await readBody(req);
    // Modal's proxy auth answers 401 before the app sees the request.
    if (req.headers['modal-key'] !== state.key || req.headers['modal-secret'] !== state.secret) {
      res
        .writeHead(401, { 'content-type': 'text/plain' })
        .end('modal-http: missing or invalid credentials');
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text);
    } catch {
      res.writeHead(422, { 'content-type': 'application/json' }).end('{"detail":"invalid JSON"}');
      return;
    }
    state.requests.push({ body, headers: req.headers });
    if (state.delayMs > 0) await new Promise((r) => setTimeout(r, state.delayMs));
    switch (state.mode) {
      case 'slow':
        await new Promise((r) => setTimeout(r, 5000));
        break;
      case 'garbage':
        res
          .writeHead(200, { 'content-type': 'image/png' })
          .end('<html>definitely not a png</html>');
        return;
      case 'huge':
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(Buffer.alloc(3 * 1024 * 1024, 7));
        return;
      case 'unavailable':
        res.writeHead(503, { 'content-type': 'text/plain' }).end('no GPU available');
        return;
      case 'fail-once':
        if (!failedOnce) {
          failedOnce = true;
          res.writeHead(500, { 'content-type': 'text/plain' }).end('CUDA out of memory');
          return;
        }
        break;
      default:
        break;
    }
    if (res.destroyed) return;
    const width = Number(body.width) || 64;
    const height = Number(body.height) || 64;
    const seed = Number(body.seed) || 0;
    const png = await sharp({
      create: { width, height, channels: 3, background: { r: seed % 256, g: 100, b: 150 } },
    })
      .png()
      .toBuffer();
    res.writeHead(200, { 'content-type': 'image/png', 'x-seed': String(seed) }).end(png);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  state.url = `http://127.0.0.1:${port}/`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
