/**
 * Cost per job, from the server process's own CPU time and memory (never throughput: this
 * process, the load generator, shares the machine's cores).
 *
 * `npm run bench:cost [scenario...]`, scenarios (default: pipeline enqueue memory):
 * - pipeline: CPU per job, enqueue → image on the WebSocket, embedded (relay + worker + SQS
 *   emulator in one process), 8 jobs in flight: 64×64 with output safety off and on (`spoiler`,
 *   the default, runs the classifier on every image), and 1024² with it off, with 2 slots
 *   (`WORKER_CONCURRENCY`, as for 64×64) and with 4.
 * - enqueue: CPU per `POST /enqueue` of a relay-only process, on SQS (emulator hosted here) and
 *   on BullMQ (a redis-server started here), and SQS requests per job; first the floor, a bare
 *   Fastify server answering the same request with the same 202 (bench/enqueue-floor.ts). Each
 *   is measured over 2,000 requests after 300, and again (`steady state`) over 4,000 after
 *   10,000 (the floor too).
 * - scaling: CPU per `POST /enqueue` as outstanding jobs grow to BENCH_SCALING_MAX (100,000),
 *   measured at 10 / 1,000 / 10,000 / 100,000 outstanding, on SQS and on BullMQ.
 * - memory: idle RSS and JS heap per role, RSS after 1,000 1 MiB images left the result
 *   buffer, and the memory one idle WebSocket costs; its servers run with the Dockerfile's
 *   `MALLOC_*` settings (exported values win).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import * as net from 'node:net';
import { cpus } from 'node:os';
import WebSocket from 'ws';
import { signPushHeaders } from '../contracts/push.ts';
import { startEmbeddedSqs } from '../queue/embedded-sqs.ts';
import { noisePng } from '../test/helpers/images.ts';
import { freePort } from '../test/helpers/net.ts';
import { encodePush } from '../worker/push-client.ts';
import {
  type BenchServer,
  enqueue,
  machine,
  report,
  startServer,
  UNLIMITED,
  type Usage,
} from './lib.ts';

const scenarios = process.argv.slice(2);
const wanted = (name: string) =>
  scenarios.length === 0 ? name !== 'scaling' : scenarios.includes(name);
const SECRET = randomBytes(32).toString('base64url');
const MB = 1024 * 1024;

/** Every request from its own address (TRUST_PROXY=fly), so per-user limits never bite. */
let client = 0;
function clientIp(): string {
  const n = client++;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

/** One job of one `size`² image, from a client address of its own. */
function enqueueOne(url: string, size = 64): Promise<{ jobId: string; ws: string }> {
  return enqueue(
    url,
    { prompt: 'cost benchmark', width: size, height: size, count: 1 },
    { 'fly-client-ip': clientIp() },
  );
}

async function pool(count: number, width: number, fn: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

/** CPU ms the server spent per unit of `work`. */
async function cpuPer(server: BenchServer, units: number, work: () => Promise<void>) {
  const before = await server.usage();
  await work();
  const after = await server.usage();
  return (after.cpuMs - before.cpuMs) / units;
}

const LIMITS = { ...UNLIMITED, TRUST_PROXY: 'fly', LIMIT_IMAGES_PER_USER: '1000000' };

async function withSqs<T>(fn: (env: Record<string, string>) => Promise<T>): Promise<T> {
  const sqs = await startEmbeddedSqs({
    region: 'us-east-1',
    maxReceiveCount: 3,
    visibilityTimeoutSeconds: 30,
  });
  try {
    return await fn({
      SQS_QUEUE_URL: sqs.queueUrl,
      SQS_ENDPOINT: sqs.endpoint,
      AWS_ACCESS_KEY_ID: sqs.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: sqs.credentials.secretAccessKey,
      RELAY_SECRET: SECRET,
    });
  } finally {
    await sqs.stop();
  }
}

async function withRedis<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const port = await freePort();
  const redis: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  try {
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.end();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (i > 100) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    return await fn(`redis://127.0.0.1:${port}`);
  } finally {
    redis.kill('SIGTERM');
  }
}

process.stdout.write(`# ${await machine()}\n`);

/** CPU per job of the embedded pipeline (enqueue → image on the WebSocket), 8 in flight. */
async function pipelineCost(
  safety: 'off' | 'spoiler',
  size: number,
  jobs: number,
  concurrency = 2,
) {
  const server = await startServer({
    WORKER_CONCURRENCY: String(concurrency),
    SAFETY: safety,
    ...LIMITS,
  });
  const job = async () => {
    const { ws } = await enqueueOne(server.url, size);
    await new Promise<void>((resolve, reject) => {
      const socket = new WebSocket(ws);
      socket.on('message', (_d, isBinary) => {
        if (isBinary) {
          socket.close();
          resolve();
        }
      });
      socket.on('close', () => resolve());
      socket.on('error', reject);
    });
  };
  try {
    await pool(Math.ceil(jobs / 10), 8, job);
    const started = performance.now();
    const before = await server.usage();
    // This process's own CPU too: the load generator shares the cores (it enqueues, and takes
    // each image off its WebSocket), so the ceiling for the two together is lower.
    const benchBefore = process.cpuUsage();
    await pool(jobs, 8, job);
    const benchCpu = process.cpuUsage(benchBefore);
    const after = await server.usage();
    const ms = (after.cpuMs - before.cpuMs) / jobs;
    const benchMs = (benchCpu.user + benchCpu.system) / 1000 / jobs;
    const jobsPerS = jobs / ((performance.now() - started) / 1000);
    // SQS requests per job (what AWS bills), by action, from the server's own HTTP requests.
    const requests: Record<string, number> = {};
    let total = 0;
    for (const [action, n] of Object.entries(after.sqsRequests)) {
      const d = n - (before.sqsRequests[action] ?? 0);
      if (d === 0) continue;
      requests[`sqs_${action}`] = d / jobs;
      total += d;
    }
    const slots = concurrency === 2 ? '' : `, WORKER_CONCURRENCY=${concurrency}`;
    report(
      `pipeline CPU per job (embedded, demo ${size}x${size}, 8 in flight, SAFETY=${safety}${slots})`,
      {
        jobs,
        cpu_ms_per_job: ms,
        jobs_per_s: jobsPerS,
        // What the machine's cores could do at that CPU cost per job (the server's alone).
        cpu_ceiling_jobs_per_s: (cpus().length * 1000) / ms,
        bench_cpu_ms_per_job: benchMs,
        // The same with the load generator's CPU per job added: what this run could reach.
        cpu_ceiling_with_bench_jobs_per_s: (cpus().length * 1000) / (ms + benchMs),
        sqs_requests_per_job: total / jobs,
        ...requests,
      },
    );
  } finally {
    await server.stop();
  }
}

if (wanted('pipeline')) {
  await pipelineCost('off', 64, 1000);
  // Output safety's classifier (~65 ms a job on this machine's CPU) is on by default.
  await pipelineCost('spoiler', 64, 200);
  await pipelineCost('off', 1024, 200);
  // With 2 slots a 1024² job's phases (render on the event loop, libvips' single-threaded PNG
  // stage) leave cores idle: the same load with 4 slots shows what the CPU allows.
  await pipelineCost('off', 1024, 200, 4);
}

/** Requests of the steady-state figure's warm-up (with the first figure's 2,300) and window. */
const STEADY_WARM = 10_000;
const STEADY_WINDOW = 4_000;

/**
 * The same server further on, `done` requests in: after 2,300 requests V8 is still compiling
 * the hot path (its compiler threads were ~8% of the profile) and code run once per batch, such
 * as the SDK's, has run a few hundred times. Reported beside the first figure, which stays as it
 * was.
 */
async function steadyEnqueueCost(server: BenchServer, done: number, name: string) {
  await pool(STEADY_WARM - done, 8, () => enqueueOne(server.url));
  const steady = await cpuPer(server, STEADY_WINDOW, () =>
    pool(STEADY_WINDOW, 8, () => enqueueOne(server.url)),
  );
  report(name, {
    warm_requests: STEADY_WARM,
    requests: STEADY_WINDOW,
    cpu_ms_per_request: steady,
  });
}

async function enqueueCost(label: string, env: Record<string, string>) {
  const server = await startServer({ ...LIMITS, ...env }, 'relay');
  try {
    await pool(300, 8, () => enqueueOne(server.url));
    const n = 2000;
    const before = await server.usage();
    await pool(n, 8, () => enqueueOne(server.url));
    const after = await server.usage();
    // SQS requests per job (what AWS bills), from the server's own HTTP requests; none on BullMQ.
    let sqs = 0;
    for (const [action, count] of Object.entries(after.sqsRequests))
      sqs += count - (before.sqsRequests[action] ?? 0);
    report(`POST /enqueue CPU, relay only, ${label}`, {
      requests: n,
      cpu_ms_per_request: (after.cpuMs - before.cpuMs) / n,
      ...(label === 'SQS' ? { sqs_requests_per_job: sqs / n } : {}),
    });
    await steadyEnqueueCost(
      server,
      300 + n,
      `POST /enqueue CPU, relay only, ${label}, steady state`,
    );
  } finally {
    await server.stop();
  }
}

if (wanted('enqueue')) {
  // The floor: a bare Fastify server answering the same request with the same 202 (bench/enqueue-floor.ts).
  const floor = await startServer({}, 'floor', new URL('./enqueue-floor.ts', import.meta.url));
  try {
    await pool(300, 8, () => enqueueOne(floor.url));
    const n = 2000;
    const ms = await cpuPer(floor, n, () => pool(n, 8, () => enqueueOne(floor.url)));
    report('POST /enqueue floor: bare Fastify, same body and 202, nothing else', {
      requests: n,
      cpu_ms_per_request: ms,
    });
    await steadyEnqueueCost(floor, 300 + n, 'POST /enqueue floor, steady state');
  } finally {
    await floor.stop();
  }
  await withSqs((env) => enqueueCost('SQS', env));
  await withRedis((url) =>
    enqueueCost('BullMQ', { QUEUE_BACKEND: 'bullmq', REDIS_URL: url, RELAY_SECRET: SECRET }),
  );
}

/**
 * CPU per `POST /enqueue` at 10 / 1,000 / 10,000 / 100,000 outstanding (queued, never taken: the
 * process is a relay only) jobs. The process is warmed up first with jobs that are then
 * cancelled, so the first window measures the same JIT-compiled code as the last.
 */
async function scalingCost(label: string, env: Record<string, string>) {
  const max = Number(process.env.BENCH_SCALING_MAX ?? 100_000);
  const marks = [10, 1_000, 10_000, 100_000].filter((m) => m <= max);
  const server = await startServer({ ...LIMITS, ...env }, 'relay');
  try {
    const warm: string[] = [];
    await pool(1000, 8, async () => warm.push((await enqueueOne(server.url)).jobId));
    await pool(warm.length, 8, async (i) => {
      const res = await fetch(`${server.url}/jobs/${warm[i]}`, { method: 'DELETE' });
      if (res.status !== 200) throw new Error(`cancel answered ${res.status}`);
    });
    let outstanding = 0;
    const window = 1000;
    const figures: Record<string, number> = {};
    for (const mark of marks) {
      const upTo = Math.max(0, mark - outstanding);
      await pool(upTo, 8, () => enqueueOne(server.url));
      outstanding += upTo;
      const ms = await cpuPer(server, window, () => pool(window, 8, () => enqueueOne(server.url)));
      outstanding += window;
      figures[`at_${mark}`] = ms;
    }
    report(`POST /enqueue CPU ms per request by outstanding jobs (relay only, ${label})`, figures);
  } finally {
    await server.stop();
  }
}

if (wanted('scaling')) {
  await withSqs((env) => scalingCost('SQS', env));
  await withRedis((url) =>
    scalingCost('BullMQ', { QUEUE_BACKEND: 'bullmq', REDIS_URL: url, RELAY_SECRET: SECRET }),
  );
}

/**
 * The Docker image's glibc malloc settings (`MALLOC_*` in the Dockerfile), for the memory
 * scenario's servers: its figures are what the image runs with. Exported values win.
 */
function dockerMalloc(): Record<string, string> {
  const dockerfile = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
  const env: Record<string, string> = {};
  for (const [, name, value] of dockerfile.matchAll(/\b(MALLOC_[A-Z_]+)=(\S+)/g))
    env[name!] = process.env[name!] ?? value!;
  return env;
}

/** How long the relay stays idle after the buffer emptied before RSS is read again. */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 20_000);

/** A role's memory after it has idled a second, after GC: RSS and the JS heap in use. */
async function idleMemory(role: string, env: Record<string, string>): Promise<Usage> {
  const server = await startServer({ ...LIMITS, ...env }, role);
  try {
    await new Promise((r) => setTimeout(r, 1000));
    return await server.usage(true);
  } finally {
    await server.stop();
  }
}

/**
 * A process's resident bytes by kind of mapping (Linux `/proc/PID/smaps`; undefined elsewhere):
 * glibc's main heap (`[heap]`), other anonymous memory, and files (code, data).
 */
function residentByMapping(
  pid: number,
): { heap: number; anon: number; file: number; lazyFree: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return undefined;
  }
  const out = { heap: 0, anon: 0, file: 0, lazyFree: 0 };
  let kind: 'heap' | 'anon' | 'file' | undefined = 'anon';
  for (const line of text.split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const name = mapping[1] ?? '';
      kind =
        name === '[heap]'
          ? 'heap'
          : name === ''
            ? 'anon'
            : name.startsWith('/')
              ? 'file'
              : undefined;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && kind) out[kind] += Number(rss[1]) * 1024;
    // Pages given back with MADV_FREE (V8 frees its unused heap pages so): still counted in
    // RSS until the kernel needs the memory, then dropped without being written anywhere.
    const lazy = /^LazyFree:\s+(\d+) kB/.exec(line);
    if (lazy) out.lazyFree += Number(lazy[1]) * 1024;
  }
  return out;
}

/** `idle/after` in MB. */
function pair<T>(idle: T, after: T, of: (u: T) => number): string {
  return `${(of(idle) / MB).toFixed(1)}/${(of(after) / MB).toFixed(1)}`;
}

if (wanted('memory')) {
  const malloc = dockerMalloc();
  process.stdout.write(
    `# memory: ${Object.entries(malloc)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}\n`,
  );
  await withSqs(async (sqsEnv) => {
    const env = { ...sqsEnv, ...malloc };
    const relayPort = await freePort();
    const relay = await idleMemory('relay', env);
    // A worker needs a relay URL; nothing has to answer there while it idles.
    const worker = await idleMemory('worker', {
      ...env,
      RELAY_URL: `http://127.0.0.1:${relayPort}`,
    });
    const embedded = await idleMemory('all', { ...malloc, RELAY_SECRET: SECRET });
    report('idle RSS per role (after GC)', {
      relay_MB: relay.rss / MB,
      worker_MB: worker.rss / MB,
      embedded_MB: embedded.rss / MB,
      // The JS heap each full mark-compact walks (the relay's CPU per image grows with it).
      relay_heap_MB: relay.heapUsed / MB,
      worker_heap_MB: worker.heapUsed / MB,
      embedded_heap_MB: embedded.heapUsed / MB,
    });

    // 1,000 images of 1 MiB through the relay's buffer, then gone (RESULT_TTL_SECONDS=1).
    const server = await startServer({ ...LIMITS, ...env, RESULT_TTL_SECONDS: '1' }, 'relay');
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const idleUsage = await server.usage(true);
      const idleMaps = residentByMapping(server.pid);
      const idle = idleUsage.rss;
      // A real ~1 MiB PNG (noise barely compresses): the relay checks an image's structure.
      const side = Math.round(Math.sqrt(MB / 3));
      const image = await noisePng(side, side);
      const agent = new Agent({ keepAlive: true, maxSockets: 8 });
      const push = async () => {
        const { jobId } = await enqueueOne(server.url);
        const { body, contentType } = encodePush(
          { jobId, status: 'done', contentType: 'image/png', seed: 1 },
          image,
        );
        // Signed in the headers (v2), as the worker signs.
        const signed = signPushHeaders(SECRET, jobId, body);
        await new Promise<void>((resolve, reject) => {
          const req = request(
            `${server.url}/push`,
            {
              method: 'POST',
              agent,
              headers: {
                'content-type': contentType,
                'content-length': body.length,
                ...signed,
              },
            },
            (res) => {
              res.resume();
              res.on('end', () =>
                res.statusCode === 200 ? resolve() : reject(new Error(`push ${res.statusCode}`)),
              );
            },
          );
          req.on('error', reject);
          req.end(body);
        });
      };
      await pool(1000, 8, push);
      const peak = (await server.usage()).rss;
      // The sweep runs every second; the TTL is one second.
      await new Promise((r) => setTimeout(r, 3000));
      const afterUsage = await server.usage(true);
      const afterMaps = residentByMapping(server.pid);
      const after = afterUsage.rss;
      agent.destroy();
      // And once the relay has been idle a while longer: V8 gives back heap pages it no longer
      // needs only after the allocation rate has stayed low for some seconds (its memory reducer).
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const settledUsage = await server.usage(true);
      const settledMaps = residentByMapping(server.pid);
      report('relay RSS around 1,000 1 MiB images in the result buffer (after GC)', {
        idle_MB: idle / MB,
        peak_MB: peak / MB,
        after_release_MB: after / MB,
        after_over_idle: after / idle,
        settled_MB: settledUsage.rss / MB,
        settled_over_idle: settledUsage.rss / idle,
        // Where what is left lives, idle/after: the JS heap's objects and its reserved pages,
        // memory V8 knows of outside it (Buffers), and (Linux) the resident pages by mapping:
        // glibc's main heap, other anonymous memory (V8's pages, thread arenas, stacks), files.
        heap_MB_idle_after: pair(idleUsage, afterUsage, (u) => u.heapUsed),
        heap_total_MB_idle_after: pair(idleUsage, afterUsage, (u) => u.heapTotal),
        heap_total_MB_settled: settledUsage.heapTotal / MB,
        external_MB_idle_after: pair(idleUsage, afterUsage, (u) => u.external),
        ...(idleMaps && afterMaps && settledMaps
          ? {
              malloc_heap_MB_idle_after: pair(idleMaps, afterMaps, (m) => m.heap),
              other_anon_MB_idle_after: pair(idleMaps, afterMaps, (m) => m.anon),
              files_MB_idle_after: pair(idleMaps, afterMaps, (m) => m.file),
              malloc_heap_MB_settled: settledMaps.heap / MB,
              other_anon_MB_settled: settledMaps.anon / MB,
              lazy_free_MB_idle_after_settled: `${pair(idleMaps, afterMaps, (m) => m.lazyFree)}/${(settledMaps.lazyFree / MB).toFixed(1)}`,
            }
          : {}),
      });

      // Idle WebSockets waiting on queued jobs.
      const sockets = 1000;
      const jobs: Array<{ ws: string }> = [];
      for (let i = 0; i < sockets; i++) jobs.push(await enqueueOne(server.url));
      const before = await server.usage(true);
      const open: WebSocket[] = [];
      await pool(sockets, 16, async (i) => {
        const socket = new WebSocket(jobs[i]!.ws);
        open.push(socket);
        await new Promise<void>((resolve, reject) => {
          socket.once('message', () => resolve());
          socket.once('error', reject);
        });
      });
      await new Promise((r) => setTimeout(r, 500));
      const withSockets = await server.usage(true);
      for (const s of open) s.terminate();
      report('idle WebSocket memory (per socket, after GC)', {
        sockets,
        rss_KB: (withSockets.rss - before.rss) / sockets / 1024,
        heap_KB: (withSockets.heapUsed - before.heapUsed) / sockets / 1024,
        external_KB: (withSockets.external - before.external) / sockets / 1024,
      });
    } finally {
      await server.stop();
    }
  });
}
