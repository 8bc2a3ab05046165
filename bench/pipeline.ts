/**
 * Pipeline overhead: enqueue → image on the WebSocket with the demo generator at 64×64, one job
 * at a time, through the embedded SQS emulator and a worker in the server process.
 * `npm run bench:pipeline [jobs]`
 */
import WebSocket from 'ws';
import { enqueue, machine, quantile, report, startServer, UNLIMITED } from './lib.ts';

const JOBS = Number(process.argv[2] ?? 500);
const WARMUP = 20;

// The pipeline's own overhead: output safety's cost is measured by bench:safety.
const server = await startServer({ WORKER_CONCURRENCY: '2', SAFETY: 'off', ...UNLIMITED });

async function oneJob(i: number): Promise<number> {
  const t0 = performance.now();
  const { ws } = await enqueue(server.url, {
    prompt: `benchmark job ${i}`,
    width: 64,
    height: 64,
    seed: i,
    count: 1,
  });
  await new Promise<void>((resolve, reject) => {
    const socket = new WebSocket(ws);
    socket.on('message', (_data, isBinary) => {
      if (isBinary) {
        socket.close();
        resolve();
      }
    });
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
  return performance.now() - t0;
}

try {
  for (let i = 0; i < WARMUP; i++) await oneJob(1_000_000 + i);
  const times: number[] = [];
  const started = performance.now();
  for (let i = 0; i < JOBS; i++) times.push(await oneJob(i));
  const wall = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  process.stdout.write(`# ${await machine()}\n`);
  report('pipeline enqueue→image (demo 64x64, sequential)', {
    jobs: JOBS,
    p50_ms: quantile(times, 0.5),
    p90_ms: quantile(times, 0.9),
    p99_ms: quantile(times, 0.99),
    max_ms: times.at(-1)!,
    jobs_per_s: JOBS / wall,
  });
} finally {
  await server.stop();
}
