/**
 * Relay throughput: 1 MiB images pushed (signed and encoded by the worker's own push client:
 * `application/octet-stream` with a v3-signed meta header, or `multipart` v2 as workers before
 * it sent) and delivered to waiting WebSocket clients, 16 at a time. Measures jobs/s, MB/s,
 * push→frame latency and the relay process's own CPU time per MiB (from process.cpuUsage, not
 * throughput). The relay runs alone in a child process; this process plays workers and browsers.
 * Jobs are queued in batches of 64 (`BENCH_BATCH`) before their images are pushed.
 * Then the same load against the floor (bench/relay-floor.ts: HMAC of the body and a loopback TCP
 * forward, nothing else), measured the same way, and the ratio of the two; and against the same
 * floor in a process that has also started an idle relay (the relay's live heap, which V8's full
 * collections mark), and the ratio to that.
 * `npm run bench:relay [jobs] [concurrency] [octet-stream|multipart]`
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { PushMeta } from '../contracts/push.ts';
import { startEmbeddedSqs } from '../queue/embedded-sqs.ts';
import { noisePng } from '../test/helpers/images.ts';
import { freePort } from '../test/helpers/net.ts';
import { encodeOctetPush, encodePush, signEncodedPush } from '../worker/push-client.ts';
import { machine, quantile, report, startServer, UNLIMITED } from './lib.ts';

const JOBS = Number(process.argv[2] ?? 800);
const CONCURRENCY = Number(process.argv[3] ?? 16);
const FORM = process.argv[4] ?? 'octet-stream';
/** Jobs queued (with a waiting WebSocket each) at a time: `BENCH_BATCH=800` queues them all. */
const BATCH = Number(process.env.BENCH_BATCH ?? 64);
if (FORM !== 'octet-stream' && FORM !== 'multipart')
  throw new Error(`form must be octet-stream or multipart, not ${FORM}`);
/** The image's size in MiB (`BENCH_IMAGE_MIB`, default 1): two sizes split per-job from per-byte cost. */
const IMAGE_MIB = Number(process.env.BENCH_IMAGE_MIB ?? 1);
const IMAGE_BYTES = IMAGE_MIB * 1024 * 1024;
const SECRET = randomBytes(32).toString('base64url');

// A ~1 MiB (IMAGE_MIB) real PNG (noise barely compresses): the relay walks its chunks before delivering.
const side = Math.round(Math.sqrt(IMAGE_BYTES / 3));
const image = await noisePng(side, side);

// The relay alone (no worker), against an SQS emulator this process hosts, as a split deploy runs.
const sqs = await startEmbeddedSqs({
  region: 'us-east-1',
  maxReceiveCount: 3,
  visibilityTimeoutSeconds: 30,
});
const relayEnv = {
  RELAY_SECRET: SECRET,
  ...UNLIMITED,
  SQS_QUEUE_URL: sqs.queueUrl,
  SQS_ENDPOINT: sqs.endpoint,
  AWS_ACCESS_KEY_ID: sqs.credentials.accessKeyId,
  AWS_SECRET_ACCESS_KEY: sqs.credentials.secretAccessKey,
};
const server = await startServer(relayEnv, 'relay');
const wsBase = server.url.replace('http', 'ws');
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

interface Waiting {
  jobId: string;
  frame: Promise<number>;
}

/** Set-up, not timed: a queued job and a WebSocket waiting on it. */
async function waitingJob(i: number): Promise<Waiting> {
  const res = await fetch(`${server.url}/enqueue`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      prompt: `relay bench ${i}`,
      width: 1024,
      height: 1024,
      seed: i,
      count: 1,
    }),
  });
  if (res.status !== 202) throw new Error(`enqueue answered ${res.status}: ${await res.text()}`);
  const { jobId } = (await res.json()) as { jobId: string };
  const socket = new WebSocket(`${wsBase}/ws?jobId=${jobId}`);
  const frame = new Promise<number>((resolve, reject) => {
    socket.on('message', (data, isBinary) => {
      if (isBinary) {
        if ((data as Buffer).length !== image.length) reject(new Error('short frame'));
        resolve(performance.now());
        socket.close();
      }
    });
    socket.on('error', reject);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return { jobId, frame };
}

/** Timed: push the image as a worker does and wait for the frame at the browser's end. */
async function deliver(job: Waiting, i: number): Promise<number> {
  const t0 = performance.now();
  const meta: PushMeta = { jobId: job.jobId, status: 'done', contentType: 'image/png', seed: i };
  const encoded =
    (FORM === 'octet-stream' ? encodeOctetPush(meta, image) : undefined) ?? encodePush(meta, image);
  const { body } = encoded;
  // Signed in the headers (v3 or v2), as the worker signs: the relay authenticates before the body.
  const signed = signEncodedPush(SECRET, meta, encoded);
  // node:http writes the Buffer as it is (fetch would copy it): this process plays many workers
  // and should cost the machine as little as possible.
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      `${server.url}/push`,
      {
        method: 'POST',
        agent,
        headers: signed,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
  if (status !== 200) throw new Error(`push answered ${status}`);
  return (await job.frame) - t0;
}

async function pool<T>(count: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

/**
 * Deliver `total` images in batches: a batch's jobs are queued and their WebSockets opened (not
 * timed), then its images pushed (timed, and the relay's CPU read around it). Batches keep the
 * queue as deep as one batch: each state change tells every queued waiter its new position (at
 * most every 250 ms), a cost of the queue's length, not of the image.
 */
async function run(
  total: number,
): Promise<{ latencies: number[]; seconds: number; cpuMs: number }> {
  const latencies: number[] = [];
  let seconds = 0;
  let cpuMs = 0;
  for (let done = 0; done < total; done += BATCH) {
    const size = Math.min(BATCH, total - done);
    const jobs = await pool(size, CONCURRENCY, (i) => waitingJob(done + i));
    const before = await server.usage();
    const started = performance.now();
    latencies.push(...(await pool(size, CONCURRENCY, (i) => deliver(jobs[i]!, done + i))));
    seconds += (performance.now() - started) / 1000;
    cpuMs += (await server.usage()).cpuMs - before.cpuMs;
  }
  return { latencies, seconds, cpuMs };
}

/**
 * The floor's CPU per MiB under the same load: the same bodies, 16 at a time over node:http,
 * each forwarded to one of 16 loopback sockets this process reads. `besideRelay`: the floor in a
 * process that has also started an idle relay (its code, flags and live heap; see
 * bench/relay-floor.ts). Also the floor process's live heap after a full GC.
 */
async function floorCpuPerMiB(
  total: number,
  besideRelay: boolean,
): Promise<{ cpuMsPerMiB: number; heapUsed: number }> {
  const env: NodeJS.ProcessEnv = besideRelay
    ? {
        ...process.env,
        ...relayEnv,
        FLOOR_BESIDE_RELAY: '1',
        HOST: '127.0.0.1',
        PORT: String(await freePort()),
        LOG_LEVEL: 'error',
      }
    : { ...process.env, FLOOR_BESIDE_RELAY: '' };
  const child = fork(fileURLToPath(new URL('./relay-floor.ts', import.meta.url)), {
    env,
    execArgv: [...process.execArgv, '--expose-gc'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  try {
    const ports = await new Promise<{ http: number; tcp: number }>((resolve) =>
      child.once('message', (m) => resolve(m as { http: number; tcp: number })),
    );
    const ask = <T>(what: string, field: string) =>
      new Promise<T>((resolve) => {
        child.once('message', (m) => resolve((m as Record<string, T>)[field]!));
        child.send(what);
      });
    const usage = () => ask<number>('usage', 'cpuMs');
    const sinks = await Promise.all(
      Array.from(
        { length: CONCURRENCY },
        () =>
          new Promise<Socket>((resolve) => {
            const socket = connect(ports.tcp, '127.0.0.1', () => resolve(socket));
            socket.resume();
          }),
      ),
    );
    const floorAgent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const one = () =>
      new Promise<void>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: ports.http,
            method: 'POST',
            path: '/',
            agent: floorAgent,
            headers: { 'content-length': image.length },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve());
          },
        );
        req.on('error', reject);
        req.end(image);
      });
    await pool(64, CONCURRENCY, one);
    const before = await usage();
    await pool(total, CONCURRENCY, one);
    const after = await usage();
    const heapUsed = await ask<number>('heap', 'heapUsed');
    floorAgent.destroy();
    for (const s of sinks) s.destroy();
    return { cpuMsPerMiB: (after - before) / ((total * image.length) / (1024 * 1024)), heapUsed };
  } finally {
    child.kill();
  }
}

try {
  await run(64);
  const { latencies, seconds, cpuMs } = await run(JOBS);
  latencies.sort((a, b) => a - b);
  const relayCpu = cpuMs / ((JOBS * image.length) / (1024 * 1024));
  const relayHeap = (await server.usage(true)).heapUsed;
  const floor = await floorCpuPerMiB(JOBS, false);
  const beside = await floorCpuPerMiB(JOBS, true);
  process.stdout.write(`# ${await machine()}\n`);
  report(
    `relay ${IMAGE_MIB} MiB push→WebSocket frame (${FORM}, concurrency ${CONCURRENCY}, batch ${BATCH})`,
    {
      jobs: JOBS,
      jobs_per_s: JOBS / seconds,
      MB_per_s: (JOBS * image.length) / 1e6 / seconds,
      // The relay process's own CPU time (push in, WebSocket frame out), per 1 MiB image.
      relay_cpu_ms_per_MiB: relayCpu,
      // The same for a server that only HMACs the body and forwards it over loopback TCP.
      floor_cpu_ms_per_MiB: floor.cpuMsPerMiB,
      relay_over_floor: relayCpu / floor.cpuMsPerMiB,
      // That floor in a process that has also started an idle relay: the relay's live heap, whose
      // full collections (one every ~64 MB of body chunks) cost in proportion to it.
      floor_beside_relay_cpu_ms_per_MiB: beside.cpuMsPerMiB,
      relay_over_floor_beside_relay: relayCpu / beside.cpuMsPerMiB,
      // Live heaps after a full GC, MB: the relay after the run, the bare floor, the floor beside a relay.
      heap_MB_relay: relayHeap / 1e6,
      heap_MB_floor: floor.heapUsed / 1e6,
      heap_MB_floor_beside_relay: beside.heapUsed / 1e6,
      p50_ms: quantile(latencies, 0.5),
      p99_ms: quantile(latencies, 0.99),
      max_ms: latencies.at(-1)!,
    },
  );
} finally {
  await server.stop();
  await sqs.stop();
}
