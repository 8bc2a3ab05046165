/** Benchmark helpers: run imagine in a child process (as `npm start` does) and summarise timings. */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/net.ts';

/** Limits lifted: a benchmark is one client sending many jobs. */
export const UNLIMITED = {
  LIMIT_IMAGES_PER_USER: '1000000',
  LIMIT_IMAGES_PER_SCOPE: '10000000',
  LIMIT_CONCURRENT_PER_USER: '1000',
  LIMIT_QUEUE_LENGTH: '1000000',
} as const;

/** A server started for a benchmark. */
export interface BenchServer {
  url: string;
  /** The server process (its own CPU time and memory are read from /proc). */
  pid: number;
  /** The server process's own CPU time and memory (after a full GC when `gc` is set). */
  usage(gc?: boolean): Promise<Usage>;
  stop(): Promise<void>;
}

/** What {@link BenchServer.usage} reports. */
export interface Usage {
  cpuMs: number;
  rss: number;
  heapUsed: number;
  /** The JS heap's reserved pages (heapUsed and the room V8 keeps). */
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** Outgoing SQS requests so far, by action (`ReceiveMessage`, `DeleteMessageBatch`, ...). */
  sqsRequests: Record<string, number>;
}

const PROBE = fileURLToPath(new URL('./probe.ts', import.meta.url));

/**
 * Start `runtime/main.ts` (or another server script, `entry`, given as a URL) in a child process
 * with the given environment.
 */
export async function startServer(
  env: Record<string, string>,
  role = 'all',
  entry = new URL('../runtime/main.ts', import.meta.url),
): Promise<BenchServer> {
  const port = await freePort();
  const main = fileURLToPath(entry);
  // BENCH_SERVER_ARGS passes flags to the server process only (e.g. --cpu-prof).
  const extra = (process.env.BENCH_SERVER_ARGS ?? '').split(' ').filter(Boolean);
  const child: ChildProcess = spawn(
    process.execPath,
    ['--expose-gc', '--import', PROBE, ...extra, main, role],
    {
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'error',
        ...env,
      },
      stdio: ['ignore', process.env.BENCH_LOG_LEVEL ? 'inherit' : 'ignore', 'inherit', 'ipc'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  // A worker-only process serves no HTTP: give it time to start instead.
  if (role === 'worker') await new Promise((r) => setTimeout(r, 4000));
  for (; role !== 'worker'; ) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {}
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error('server did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid!,
    usage: (gc = false) =>
      new Promise<Usage>((resolve, reject) => {
        child.once('message', (m) => resolve(m as Usage));
        if (!child.send(gc ? 'usage-after-gc' : 'usage')) reject(new Error('server is gone'));
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** The q-quantile of sorted numbers (nearest rank). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** One line of results, also printed as JSON for machines. */
export function report(name: string, figures: Record<string, number | string>): void {
  const text = Object.entries(figures)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toFixed(2)) : v}`)
    .join('  ');
  process.stdout.write(`${name}: ${text}\n`);
}

/** Machine facts worth printing beside figures. */
export async function machine(): Promise<string> {
  const os = await import('node:os');
  return `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), node ${process.version}`;
}

/** `POST /enqueue` a JSON body; the job's id and WebSocket URL (throws unless it was accepted). */
export async function enqueue(
  url: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ jobId: string; ws: string }> {
  const res = await fetch(`${url}/enqueue`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`enqueue answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as { jobId: string; ws: string };
}
