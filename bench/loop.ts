/**
 * The creative loop through the real pipeline (relay + embedded SQS emulator + worker in one
 * server process, as `npm start` runs it) with the demo generator:
 * - per task (generate a grid of 4, vary one image into 4, upscale one image 2×): enqueue → the
 *   last image on the WebSocket, p50/p99, one job at a time, and the server's own CPU time per
 *   job (`process.cpuUsage()` in the server process, never the load generator's);
 * - the bytes the worker pushes to the relay (HTTP bodies of `POST /push`, counted by a proxy
 *   between them) for one job of 4 images compared with 4 jobs of 1 with the same seeds.
 * The vary and upscale inputs come from a loopback "CDN" (as a Discord attachment would).
 *
 * `npm run bench:loop [jobs per task] [side]` (defaults: 100 jobs, 1024 pixels).
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { DemoGenerator } from '../worker/generators/demo.ts';
import {
  type BenchServer,
  enqueue,
  machine,
  quantile,
  report,
  startServer,
  UNLIMITED,
} from './lib.ts';

const JOBS = Number(process.argv[2] ?? 100);
const SIDE = Number(process.argv[3] ?? 1024);
const WARMUP = 3;
const SEED = 1234;
const BYTE_ROUNDS = 3;

if (!Number.isInteger(JOBS) || JOBS < 1 || !Number.isInteger(SIDE) || SIDE % 16 !== 0)
  throw new Error('usage: npm run bench:loop [jobs per task] [side, a multiple of 16]');

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve(`127.0.0.1:${(server.address() as AddressInfo).port}`),
    ),
  );
}

/** A loopback image host serving one PNG: the source of every vary and upscale. */
async function startCdn(png: Buffer): Promise<{ host: string; close(): void }> {
  const server = createServer((req, res) => {
    if (req.url === '/attachments/1/2/source.png')
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length }).end(png);
    else res.writeHead(404).end();
  });
  const host = await listen(server);
  return { host, close: () => server.close() };
}

/** Push bodies seen by the counting proxy, per job id. */
interface PushTally {
  pushes: number;
  bytes: number;
}

/**
 * A proxy in front of the relay that counts the body bytes of every `POST /push` (the worker's
 * RELAY_URL points here) and passes everything through unchanged.
 */
async function startPushCounter(target: () => string) {
  const byJob = new Map<string, PushTally>();
  const server = createServer((req, res) => {
    const upstream = new URL(req.url ?? '/', target());
    const out = request(
      upstream,
      { method: req.method, headers: { ...req.headers, host: upstream.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => res.writeHead(502).end());
    if (req.method === 'POST' && upstream.pathname === '/push') {
      const jobId = String(req.headers['x-imagine-job-id'] ?? '?');
      const tally = byJob.get(jobId) ?? { pushes: 0, bytes: 0 };
      tally.pushes++;
      byJob.set(jobId, tally);
      req.on('data', (chunk: Buffer) => {
        tally.bytes += chunk.length;
      });
    }
    req.pipe(out);
  });
  const host = await listen(server);
  return { url: `http://${host}`, byJob, close: () => server.close() };
}

/** POST /enqueue, then wait for `images` binary frames on the job's WebSocket. */
async function runJob(
  url: string,
  body: Record<string, unknown>,
  images: number,
): Promise<{ ms: number; jobId: string }> {
  const t0 = performance.now();
  const { ws, jobId } = await enqueue(url, body);
  await new Promise<void>((resolve, reject) => {
    const socket = new WebSocket(ws);
    let got = 0;
    // A binary frame after a `preview` frame is a progress preview, not one of the images.
    let last: string | undefined;
    socket.on('message', (data, isBinary) => {
      if (isBinary) {
        if (last !== 'preview' && ++got === images) {
          socket.close();
          resolve();
        }
        return;
      }
      const frame = JSON.parse(String(data)) as {
        type?: string;
        state?: string;
        error?: { code: string };
      };
      last = frame.type;
      if (frame.state === 'failed' || frame.state === 'expired')
        reject(new Error(`job ${frame.state}: ${frame.error?.code ?? '?'}`));
    });
    socket.on('close', () =>
      got >= images ? resolve() : reject(new Error(`closed after ${got} of ${images} images`)),
    );
    socket.on('error', reject);
  });
  return { ms: performance.now() - t0, jobId };
}

/** CPU ms the server spent while `work` ran. */
async function cpuDuring(server: BenchServer, work: () => Promise<void>): Promise<number> {
  const before = await server.usage();
  await work();
  const after = await server.usage();
  return after.cpuMs - before.cpuMs;
}

const [source] = await new DemoGenerator().generate(
  {
    task: 'generate',
    prompt: 'the source image',
    seeds: [SEED],
    width: SIDE,
    height: SIDE,
    steps: 4,
  },
  { signal: AbortSignal.timeout(60_000) },
);
if (!source) throw new Error('the demo generator made no source image');
const cdn = await startCdn(source.bytes);
const input = {
  image: { kind: 'url', url: `http://${cdn.host}/attachments/1/2/source.png` },
  index: 0,
  seed: SEED,
  width: SIDE,
  height: SIDE,
};
const env = {
  ...UNLIMITED,
  // The loop's own cost: output safety's is measured by bench:safety.
  SAFETY: 'off',
  WORKER_CONCURRENCY: '1',
  INPUT_IMAGE_HOSTS: cdn.host,
  INPUT_IMAGE_ALLOW_HTTP: 'true',
};

const TASKS = [
  {
    name: `generate ×4 ${SIDE}²`,
    images: 4,
    body: (i: number) => ({ prompt: `a grid ${i}`, count: 4, width: SIDE, height: SIDE }),
  },
  {
    name: `vary ×4 of ${SIDE}²`,
    images: 4,
    body: (i: number) => ({ prompt: `a variation ${i}`, task: 'vary', count: 4, input }),
  },
  {
    name: `upscale ×1 ${SIDE}²→${SIDE * 2}²`,
    images: 1,
    body: (i: number) => ({ prompt: `an upscale ${i}`, task: 'upscale', input }),
  },
] as const;

interface Row {
  task: string;
  jobs: number;
  p50: number;
  p99: number;
  max: number;
  cpuMs: number;
}

const rows: Row[] = [];
let server = await startServer(env);
try {
  for (const task of TASKS) {
    for (let i = 0; i < WARMUP; i++) await runJob(server.url, task.body(-1 - i), task.images);
    const times: number[] = [];
    const cpu = await cpuDuring(server, async () => {
      for (let i = 0; i < JOBS; i++)
        times.push((await runJob(server.url, task.body(i), task.images)).ms);
    });
    times.sort((a, b) => a - b);
    rows.push({
      task: task.name,
      jobs: JOBS,
      p50: quantile(times, 0.5),
      p99: quantile(times, 0.99),
      max: times.at(-1)!,
      cpuMs: cpu / JOBS,
    });
  }
} finally {
  await server.stop();
}

// Bytes: the worker pushes through the counting proxy to the same kind of server.
let relayUrl = '';
const counter = await startPushCounter(() => relayUrl);
const grid: PushTally[] = [];
const singles: PushTally[] = [];
server = await startServer({ ...env, RELAY_URL: counter.url });
relayUrl = server.url;
try {
  for (let r = 0; r < BYTE_ROUNDS; r++) {
    const seed = SEED + 100 * r;
    const size = { width: SIDE, height: SIDE };
    const one = await runJob(server.url, { prompt: 'bytes', count: 4, seed, ...size }, 4);
    grid.push(counter.byJob.get(one.jobId)!);
    const four = { pushes: 0, bytes: 0 };
    for (let i = 0; i < 4; i++) {
      const job = await runJob(
        server.url,
        { prompt: 'bytes', count: 1, seed: seed + i, ...size },
        1,
      );
      const t = counter.byJob.get(job.jobId)!;
      four.pushes += t.pushes;
      four.bytes += t.bytes;
    }
    singles.push(four);
  }
} finally {
  await server.stop();
  counter.close();
  cdn.close();
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const gridBytes = mean(grid.map((t) => t.bytes));
const singleBytes = mean(singles.map((t) => t.bytes));

const pad = (s: string, n: number) => s.padEnd(n);
const num = (n: number, digits = 1) => n.toFixed(digits).padStart(9);
process.stdout.write(`# ${await machine()}\n`);
process.stdout.write(
  `# demo generator, relay + embedded SQS + worker in one process, SAFETY=off, one job at a time\n\n`,
);
process.stdout.write(
  `${pad('task', 28)} ${'jobs'.padStart(5)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'max ms'.padStart(9)} ${'CPU ms/job'.padStart(11)}\n`,
);
for (const r of rows)
  process.stdout.write(
    `${pad(r.task, 28)} ${String(r.jobs).padStart(5)} ${num(r.p50)} ${num(r.p99)} ${num(r.max)} ${num(r.cpuMs).padStart(11)}\n`,
  );
process.stdout.write(
  `\npush bodies, ${SIDE}² PNGs (mean of ${BYTE_ROUNDS} rounds, same seeds both ways):\n` +
    `  1 job of 4:  ${grid[0]!.pushes} pushes, ${Math.round(gridBytes)} bytes\n` +
    `  4 jobs of 1: ${singles[0]!.pushes} pushes, ${Math.round(singleBytes)} bytes ` +
    `(${(singleBytes - gridBytes).toFixed(0)} more, ${(((singleBytes - gridBytes) / gridBytes) * 100).toFixed(2)}%)\n\n`,
);
for (const r of rows)
  report(`loop ${r.task}`, {
    jobs: r.jobs,
    p50_ms: r.p50,
    p99_ms: r.p99,
    max_ms: r.max,
    cpu_ms_per_job: r.cpuMs,
  });
report('loop push bytes', {
  side: SIDE,
  grid_of_4_bytes: gridBytes,
  four_jobs_of_1_bytes: singleBytes,
  grid_pushes: grid[0]!.pushes,
  four_jobs_pushes: singles[0]!.pushes,
});
