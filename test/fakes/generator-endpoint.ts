/**
 * A local stand-in for the Flux endpoint on Modal (which cannot be reached from here): the
 * contract of worker/modal/flux_core.py — POST JSON {task, prompt, width, height, seeds, seed,
 * steps, deadline?, ...} answered with the bytes of one image, JSON {images} for several, or the
 * progress stream; a request whose deadline has passed answered 504 without generating — behind
 * what Modal's web layer does in front of it (test/worker/modal-contract.test.ts runs the client
 * against flux_core itself; this fake is for Modal's layer and for misbehaviours):
 * - proxy auth: every request (the result URL too) without the right Modal-Key / Modal-Secret
 *   gets 401 before the app sees it;
 * - cold start: the first request after a scale-to-zero waits `coldStartMs` for the container;
 * - Modal's 150 s limit (`resultRedirectMs` here, scaled down): an answer not ready by then is
 *   a 303 to a result URL on the same origin (`?__modal_function_call_id=fc-…`); a GET there
 *   waits for the same call's answer, or is redirected again after another period, and starts
 *   nothing new. The generation goes on when the client goes away, as on Modal.
 * Plus switchable misbehaviours for tests.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';

/** How the fake answers the next requests. */
export type FakeMode =
  | 'ok'
  | 'slow'
  | 'garbage'
  | 'huge'
  | 'unavailable'
  | 'fail-once'
  /** A PNG signature followed by bytes that do not decode. */
  | 'corrupt';

/** A running fake generator endpoint. */
export interface FakeGeneratorEndpoint {
  url: string;
  key: string;
  secret: string;
  mode: FakeMode;
  /** Sent as `X-Safety-Score` (the generator's own safety checker) when set. */
  safetyScore: string | undefined;
  /** Extra time every generation takes, ms. */
  delayMs: number;
  /** How long a container takes to start after a scale-to-zero (0: always warm). */
  coldStartMs: number;
  /** Modal's 150 s web-request limit, scaled down: past it, 303 to the result URL (0: never). */
  resultRedirectMs: number;
  /** Destroy the connection of the next GET on a result URL (a dropped connection). */
  dropNextResultPoll: boolean;
  /** Send the 303s to this origin instead of the endpoint's own (a hostile or broken proxy). */
  redirectOrigin: string | undefined;
  /** Most requests ever in flight at once. */
  maxInFlight: number;
  /** Requests that reached the app (POSTs with a JSON body), late ones included. */
  requests: Array<{ body: Record<string, unknown>; headers: IncomingMessage['headers'] }>;
  /** GETs on result URLs that reached the app, with their headers. */
  resultPolls: Array<{ url: string; headers: IncomingMessage['headers'] }>;
  /** Requests the app refused because their deadline had passed (no GPU used). */
  lateRefusals: number;
  /**
   * Answer a client that accepts `application/x-ndjson` with a progress stream of this many
   * steps (`stepMs` apart), then the image line, as README's streaming contract says (0: plain).
   */
  streamSteps: number;
  stepMs: number;
  /** Send a small JPEG preview with every progress line. */
  streamPreviews: boolean;
  /** Streams whose client closed the connection before the image line (a cancel). */
  streamsAbandoned: number;
  /** Configuration that points a worker at this fake (`GENERATOR=http`). */
  env(): Record<string, string>;
  /** How many generations of `prompt` were started (GPU work begun). */
  started(prompt: string): number;
  /** The next request waits for a cold start again. */
  scaleToZero(): void;
  close(): Promise<void>;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

/** The request's seeds: `seeds`, or the one `seed` of endpoints before the creative loop. */
function seedsOf(body: Record<string, unknown>): number[] {
  return Array.isArray(body.seeds) ? body.seeds.map(Number) : [Number(body.seed) || 0];
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, answer: Answer): void {
  if (res.destroyed) return;
  res.writeHead(answer.status, answer.headers).end(answer.body);
}

/** Start the fake on 127.0.0.1:0. */
export async function startFakeGenerator(): Promise<FakeGeneratorEndpoint> {
  const generations: string[] = [];
  const state: FakeGeneratorEndpoint = {
    url: '',
    key: 'wk-test-key',
    secret: 'ws-test-secret',
    mode: 'ok',
    safetyScore: undefined,
    delayMs: 0,
    coldStartMs: 0,
    resultRedirectMs: 0,
    dropNextResultPoll: false,
    redirectOrigin: undefined,
    maxInFlight: 0,
    requests: [],
    resultPolls: [],
    lateRefusals: 0,
    streamSteps: 0,
    stepMs: 0,
    streamPreviews: false,
    streamsAbandoned: 0,
    env: () => ({
      GENERATOR: 'http',
      MODAL_FLUX_URL: state.url,
      MODAL_KEY: state.key,
      MODAL_SECRET: state.secret,
    }),
    started: (prompt) => generations.filter((p) => p === prompt).length,
    scaleToZero: () => {
      booted = undefined;
    },
    close: async () => {},
  };
  let failedOnce = false;
  let inFlight = 0;
  let booted: Promise<unknown> | undefined;
  let nextCall = 0;
  const calls = new Map<string, Promise<Answer>>();

  /** What flux_core.py does with a valid request: one generation, its answer. */
  const generate = (body: Record<string, unknown>): Promise<Answer> => {
    generations.push(String(body.prompt));
    return produce(body);
  };

  /** The answer to one generation (counted by whoever began it). */
  const produce = async (body: Record<string, unknown>): Promise<Answer> => {
    if (state.delayMs > 0) await sleep(state.delayMs);
    switch (state.mode) {
      case 'slow':
        await sleep(5000);
        break;
      case 'garbage':
        return {
          status: 200,
          headers: { 'content-type': 'image/png' },
          body: '<html>definitely not a png</html>',
        };
      case 'huge':
        return {
          status: 200,
          headers: { 'content-type': 'image/png' },
          body: Buffer.alloc(3 * 1024 * 1024, 7),
        };
      case 'unavailable':
        return { status: 503, headers: { 'content-type': 'text/plain' }, body: 'no GPU available' };
      case 'corrupt':
        return {
          status: 200,
          headers: { 'content-type': 'image/png' },
          body: Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(64, 7)]),
        };
      case 'fail-once':
        if (!failedOnce) {
          failedOnce = true;
          return {
            status: 500,
            headers: { 'content-type': 'text/plain' },
            body: 'CUDA out of memory',
          };
        }
        break;
      default:
        break;
    }
    const width = Number(body.width) || 64;
    const height = Number(body.height) || 64;
    const seeds = seedsOf(body);
    const pngs = await Promise.all(
      seeds.map((seed) =>
        sharp({
          create: { width, height, channels: 3, background: { r: seed % 256, g: 100, b: 150 } },
        })
          .png()
          .toBuffer(),
      ),
    );
    const safety = state.safetyScore === undefined ? {} : { 'x-safety-score': state.safetyScore };
    if (pngs.length > 1)
      return {
        status: 200,
        headers: { 'content-type': 'application/json', ...safety },
        body: JSON.stringify({
          images: pngs.map((png, i) => ({ image: png.toString('base64'), seed: seeds[i] })),
        }),
      };
    return {
      status: 200,
      headers: { 'content-type': 'image/png', 'x-seed': String(seeds[0]), ...safety },
      body: pngs[0]!,
    };
  };

  /** The streaming answer: one progress line per step, then the image as a base64 line. */
  const stream = async (res: ServerResponse, body: Record<string, unknown>) => {
    generations.push(String(body.prompt));
    let closed = false;
    res.once('close', () => {
      closed = !res.writableFinished;
    });
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const steps = state.streamSteps;
    for (let step = 1; step <= steps; step++) {
      await sleep(state.stepMs);
      if (closed || res.destroyed) {
        state.streamsAbandoned++;
        return;
      }
      const line: Record<string, unknown> = { type: 'progress', step, steps };
      if (state.streamPreviews)
        line.preview = (
          await sharp({
            create: { width: 16, height: 16, channels: 3, background: { r: step, g: 0, b: 0 } },
          })
            .jpeg()
            .toBuffer()
        ).toString('base64');
      res.write(`${JSON.stringify(line)}\n`);
    }
    const answer = await produce(body);
    if (closed || res.destroyed) {
      state.streamsAbandoned++;
      return;
    }
    const data = Buffer.isBuffer(answer.body) ? answer.body : Buffer.from(answer.body);
    // Several images came as JSON: one image line each, as flux_core streams them.
    const images: Array<{ image: string; seed: number }> =
      answer.headers['content-type'] === 'application/json'
        ? JSON.parse(data.toString('utf8')).images
        : [{ image: data.toString('base64'), seed: seedsOf(body)[0]! }];
    res.end(
      images
        .map(
          ({ image, seed }, index) =>
            `${JSON.stringify({ type: 'image', index, seed, content_type: 'image/png', data: image })}\n`,
        )
        .join(''),
    );
  };

  /** Modal's web layer: the answer if it comes in time, else a 303 to the call's result URL. */
  const answerOrRedirect = async (res: ServerResponse, id: string, answer: Promise<Answer>) => {
    if (state.resultRedirectMs <= 0) return send(res, await answer);
    const ready = await Promise.race([answer, sleep(state.resultRedirectMs, undefined)]);
    if (ready) return send(res, ready);
    const origin = state.redirectOrigin ?? new URL(state.url).origin;
    send(res, {
      status: 303,
      headers: { location: `${origin}/?__modal_function_call_id=${id}` },
      body: '',
    });
  };

  const server: Server = createServer(async (req, res) => {
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    res.once('close', () => inFlight--);
    const text = await readBody(req);
    // Modal's proxy auth answers 401 before any container sees the request.
    if (req.headers['modal-key'] !== state.key || req.headers['modal-secret'] !== state.secret) {
      res
        .writeHead(401, { 'content-type': 'text/plain' })
        .end('modal-http: missing or invalid credentials');
      return;
    }
    if (state.coldStartMs > 0) {
      booted ??= sleep(state.coldStartMs);
      await booted;
    }
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const callId = url.searchParams.get('__modal_function_call_id');
    if (req.method === 'GET' && callId !== null) {
      const answer = calls.get(callId);
      if (!answer) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('unknown function call');
        return;
      }
      state.resultPolls.push({ url: req.url ?? '', headers: req.headers });
      if (state.dropNextResultPoll) {
        state.dropNextResultPoll = false;
        req.socket.destroy();
        return;
      }
      await answerOrRedirect(res, callId, answer);
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
      res
        .writeHead(422, { 'content-type': 'application/json' })
        .end('{"detail":"body must be JSON"}');
      return;
    }
    state.requests.push({ body, headers: req.headers });
    // flux_core.py: a caller that has already given up gets no generation.
    if (typeof body.deadline === 'number' && Date.now() / 1000 >= body.deadline) {
      state.lateRefusals++;
      res
        .writeHead(504, { 'content-type': 'application/json' })
        .end('{"detail":"the caller\'s deadline passed before generation started"}');
      return;
    }
    if (state.streamSteps > 0 && /application\/x-ndjson/.test(req.headers.accept ?? '')) {
      await stream(res, body);
      return;
    }
    const id = `fc-${++nextCall}`;
    const answer = generate(body);
    calls.set(id, answer);
    await answerOrRedirect(res, id, answer);
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
