/**
 * Load with injected faults and hostile traffic: `npm run bench:load [jobs] [backend]`
 * (backend `sqs`, the embedded default, or `bullmq`, which needs `redis-server` on the PATH).
 *
 * 1,000 jobs go through a real server process (relay + worker + queue) while:
 * - the generator (an HTTP endpoint here) answers 10% of calls 503 (retried by the queue) and 2%
 *   with a PNG header followed by garbage (the relay refuses it; the user must be told);
 * - a proxy between worker and relay answers 5% of pushes 503 without passing them on, and
 *   passes 3% on but drops the relay's answer (the worker pushes again: a duplicate);
 * - hostile clients send malformed, unsigned, forged and oversized requests at every route, and
 *   half-sent bodies that never end.
 * Every job must end in exactly one terminal message (done, or failed with a reason); the
 * figures say how many did, how many were lost or duplicated, how many 5xx the hostile traffic
 * got, how fast half-sent bodies were cut, and the server's own CPU time and peak memory.
 * (With Redis, a lookup of an unknown job waits FANOUT_GRACE_MS for another relay's event, so
 * the hostile phase, not the jobs, sets run_wall_s on the bullmq backend.)
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import sharp from 'sharp';
import WebSocket from 'ws';
import { isTerminal, type JobState, signPushHeaders } from '../contracts/push.ts';
import { freePort } from '../test/helpers/net.ts';
import { enqueue, machine, quantile, report, startServer, UNLIMITED } from './lib.ts';

const JOBS = Number(process.argv[2] ?? 1000);
const BACKEND = process.argv[3] ?? 'sqs';
const IN_FLIGHT = 40;
const HOSTILE = Number(process.env.BENCH_HOSTILE ?? 10_500);
const SECRET = randomBytes(32).toString('base64url');

/** A seeded PRNG, so a run's faults can be replayed. */
let seed = 0x5eed;
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};

const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#48c' } })
  .png()
  .toBuffer();
const faults = { generator503: 0, generatorGarbage: 0, push503: 0, pushAnswerDropped: 0 };

// The generator: 10% 503, 2% a PNG header and garbage, else a real PNG.
const generator = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const r = rand();
    if (r < 0.1) {
      faults.generator503++;
      res.writeHead(503).end('no GPU');
    } else if (r < 0.12) {
      faults.generatorGarbage++;
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(Buffer.concat([png.subarray(0, 33), randomBytes(400)]));
    } else res.writeHead(200, { 'content-type': 'image/png' }).end(png);
  });
});
const generatorPort = await listen(generator);

// The proxy in front of the relay's /push: 5% answered 503 unsent, 3% sent but answer dropped.
let relayPort = 0;
const proxy = createServer((req, res) => {
  const r = rand();
  if (r < 0.05) {
    faults.push503++;
    req.resume();
    req.on('end', () => res.writeHead(503).end('proxy says no'));
    return;
  }
  const drop = r < 0.08;
  const upstream = httpRequest(
    { host: '127.0.0.1', port: relayPort, method: req.method, path: req.url, headers: req.headers },
    (answer: IncomingMessage) => {
      if (drop) {
        faults.pushAnswerDropped++;
        answer.resume();
        answer.on('end', () => res.destroy());
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', () => res.destroy());
  req.pipe(upstream);
});
const proxyPort = await listen(proxy);

let redis: ReturnType<typeof spawn> | undefined;
const backendEnv: Record<string, string> = {};
if (BACKEND === 'bullmq') {
  const bin = spawnSync('sh', ['-c', 'command -v redis-server'], {
    encoding: 'utf8',
  }).stdout.trim();
  if (!bin) throw new Error('bench:load bullmq needs redis-server on the PATH');
  const port = await freePort();
  redis = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  await new Promise((r) => setTimeout(r, 300));
  Object.assign(backendEnv, {
    QUEUE_BACKEND: 'bullmq',
    REDIS_URL: `redis://127.0.0.1:${port}`,
    BULLMQ_ATTEMPTS: '3',
    BULLMQ_BACKOFF_SECONDS: '1',
  });
}

const server = await startServer({
  ...UNLIMITED,
  ...backendEnv,
  RELAY_SECRET: SECRET,
  GENERATOR: 'http',
  MODAL_FLUX_URL: `http://127.0.0.1:${generatorPort}/`,
  RELAY_URL: `http://127.0.0.1:${proxyPort}`,
  WORKER_CONCURRENCY: '8',
  SQS_WAIT_SECONDS: '1',
  DATA_DIR: `${(await import('node:os')).tmpdir()}/imagine-bench-load-${process.pid}`,
});
relayPort = Number(new URL(server.url).port);

/** What one job's follower saw. */
interface Outcome {
  terminals: string[];
  images: number;
  error?: string;
}

async function followOne(i: number): Promise<Outcome> {
  const { ws, jobId } = await enqueue(server.url, {
    prompt: `load ${i}`,
    width: 64,
    height: 64,
    seed: i,
    count: 1,
  });
  const out: Outcome = { terminals: [], images: 0 };
  await new Promise<void>((resolve) => {
    const socket = new WebSocket(ws);
    const guard = setTimeout(() => socket.terminate(), 120_000);
    socket.on('message', (data, isBinary) => {
      if (isBinary) {
        out.images++;
        return;
      }
      const frame = JSON.parse(String(data)) as {
        type: string;
        state?: JobState;
        error?: { code: string };
      };
      if (frame.type === 'status' && frame.state && isTerminal(frame.state)) {
        out.terminals.push(frame.state!);
        if (frame.error) out.error = frame.error.code;
      }
    });
    socket.on('close', () => {
      clearTimeout(guard);
      resolve();
    });
    socket.on('error', () => {});
  });
  if (out.terminals.length === 0) {
    // The socket dropped: follow by polling, as the page does.
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const s = (await (await fetch(`${server.url}/jobs/${jobId}`)).json()) as { state?: JobState };
      if (s.state && isTerminal(s.state)) {
        out.terminals.push(s.state);
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  return out;
}

/** Hostile traffic: returns [requests sent, 5xx answers, statuses seen]. */
async function hostile(
  total: number,
): Promise<{ sent: number; fivexx: number; byStatus: Record<string, number> }> {
  const byStatus: Record<string, number> = {};
  let sent = 0;
  let fivexx = 0;
  const jobId = randomBytes(18).toString('base64url');
  const forgedBody = '--zz\r\n\r\n--zz--';
  const forged = signPushHeaders(
    'not-the-secret-not-the-secret-not-the-secret',
    jobId,
    Buffer.from(forgedBody),
  );
  const kinds: Array<() => Promise<Response>> = [
    () => post('/enqueue', 'application/json', '{"prompt":'),
    () => post('/enqueue', 'application/json', JSON.stringify({ prompt: { $gt: '' } })),
    () => post('/enqueue', 'application/json', `{"prompt":"${'x'.repeat(70_000)}"}`),
    () => post('/enqueue', 'text/plain', 'prompt=hi'),
    () => post('/enqueue', 'application/json', '[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]'),
    () => post('/push', 'application/json', '{"job_id":"x","image":"AAAA"}'),
    () => post('/push', 'multipart/form-data; boundary=zz', forgedBody, forged),
    () => post('/push', 'multipart/form-data', 'garbage', { 'x-imagine-signature': 'v1=zz' }),
    () =>
      post('/push', 'application/json', '{}', {
        'x-imagine-timestamp': '1',
        'x-imagine-signature': `v1=${'a'.repeat(64)}`,
      }),
    () => fetch(`${server.url}/jobs/${'A'.repeat(24)}`),
    () => fetch(`${server.url}/jobs/..%2F..%2Fetc%2Fpasswd`),
    () => fetch(`${server.url}/jobs/${jobId}/image`),
    () => fetch(`${server.url}/ws?jobId=%00`),
    () => fetch(`${server.url}/metrics`, { headers: { 'x-forwarded-for': '203.0.113.1' } }),
    () => fetch(`${server.url}/%E0%A4%A`),
    () => fetch(`${server.url}/assets/../../package.json`),
  ];
  async function post(
    path: string,
    type: string,
    body: string,
    headers: Record<string, string> = {},
  ) {
    return fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': type, ...headers },
      body,
    });
  }
  const worker = async () => {
    while (sent < total) {
      const kind = kinds[sent++ % kinds.length]!;
      try {
        const res = await kind();
        await res.arrayBuffer();
        byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
        if (res.status >= 500) fivexx++;
      } catch {
        byStatus.network = (byStatus.network ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { sent, fivexx, byStatus };
}

let closedHalf = 0;
const firstLines = new Map<number, string>();
/** Half-sent bodies: open `n`, send part of a body, time until the relay cuts each. */
async function halfSent(n: number): Promise<number[]> {
  const { port } = new URL(server.url);
  return Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<number>((resolve) => {
          const socket = connect(Number(port), '127.0.0.1', () => {
            const route = i % 2 ? '/enqueue' : '/push';
            socket.write(
              `POST ${route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
                'Transfer-Encoding: chunked\r\n' +
                `X-Imagine-Timestamp: ${Math.floor(Date.now() / 1000)}\r\nX-Imagine-Signature: v1=${'0'.repeat(64)}\r\n\r\n` +
                '10\r\n{"prompt": "half',
            );
          });
          const t0 = performance.now();
          socket.on('error', () => {});
          socket.once('data', (d) => firstLines.set(i, String(d).split('\r\n')[0]!));
          socket.on('close', () => {
            firstLines.delete(i);
            closedHalf++;
            resolve(performance.now() - t0);
          });
        }),
    ),
  );
}

function serverStats(pid: number): { cpuSeconds: number; rssMiB: number; peakRssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { cpuSeconds: ticks / 100, rssMiB: kb('VmRSS') / 1024, peakRssMiB: kb('VmHWM') / 1024 };
}

try {
  const started = performance.now();
  const outcomes: Outcome[] = [];
  let next = 0;
  const latencies: number[] = [];
  const ticker = setInterval(
    () =>
      progress(
        `half-sent closed: ${closedHalf} open answered: ${JSON.stringify([...firstLines.values()].slice(0, 3))}`,
      ),
    5000,
  );
  ticker.unref();
  let jobsWall = 0;
  const jobsDone = (async () => {
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < JOBS) {
          const i = next++;
          const t0 = performance.now();
          outcomes[i] = await followOne(i).catch((err) => ({
            terminals: [],
            images: 0,
            error: String(err),
          }));
          latencies.push(performance.now() - t0);
          progress(`job ${i}: ${JSON.stringify(outcomes[i])}`);
        }
      }),
    );
    jobsWall = (performance.now() - started) / 1000;
  })();
  const [attack, cuts] = await Promise.all([
    hostile(HOSTILE).finally(() => progress('hostile done')),
    halfSent(200).finally(() => progress('half-sent done')),
  ]);
  await jobsDone;
  progress('jobs done');
  const wall = (performance.now() - started) / 1000;
  const exactlyOne = outcomes.filter((o) => o.terminals.length === 1).length;
  const lost = outcomes.filter((o) => o.terminals.length === 0).length;
  const duplicated = outcomes.filter((o) => o.terminals.length > 1 || o.images > 1).length;
  const done = outcomes.filter((o) => o.terminals[0] === 'done' && o.images === 1).length;
  const failed = outcomes.filter((o) => o.terminals[0] === 'failed').length;
  const reasons: Record<string, number> = {};
  for (const o of outcomes)
    if (o.terminals[0] === 'failed') reasons[o.error ?? '?'] = (reasons[o.error ?? '?'] ?? 0) + 1;
  latencies.sort((a, b) => a - b);
  cuts.sort((a, b) => a - b);
  const stats = serverStats(server.pid);
  process.stdout.write(`# ${await machine()}; backend ${BACKEND}\n`);
  report('load with faults', {
    jobs: JOBS,
    exactly_one_terminal: exactlyOne,
    done,
    failed_told: failed,
    lost,
    duplicated,
    jobs_wall_s: jobsWall,
    jobs_per_s: JOBS / jobsWall,
    run_wall_s: wall,
    p50_ms: quantile(latencies, 0.5),
    p99_ms: quantile(latencies, 0.99),
  });
  report('injected faults', { ...faults, failed_reasons: JSON.stringify(reasons) });
  report('hostile traffic', {
    requests: attack.sent,
    http_5xx: attack.fivexx,
    statuses: JSON.stringify(attack.byStatus),
  });
  report('half-sent bodies', {
    connections: cuts.length,
    cut_p50_s: quantile(cuts, 0.5) / 1000,
    cut_max_s: cuts.at(-1)! / 1000,
  });
  report('server process', {
    cpu_s: stats.cpuSeconds,
    cpu_ms_per_job: (stats.cpuSeconds * 1000) / JOBS,
    rss_mib: stats.rssMiB,
    peak_rss_mib: stats.peakRssMiB,
  });
  if (exactlyOne !== JOBS || lost || duplicated || attack.fivexx) process.exitCode = 1;
} finally {
  await server.stop();
  generator.close();
  proxy.close();
  redis?.kill('SIGTERM');
}

function listen(s: ReturnType<typeof createServer>): Promise<number> {
  return new Promise((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)),
  );
}

function progress(what: string): void {
  if (process.env.BENCH_VERBOSE) process.stderr.write(`${what}\n`);
}
