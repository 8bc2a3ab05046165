/**
 * What progress forwarding costs (issue 11): enqueue → image on the WebSocket, one job at a time,
 * with the worker forwarding progress off (`PROGRESS_PUSH_MS=0`) and on (the default 250 ms, and
 * tighter), and the server process's own CPU ms per job. Two generators: the demo (4 images of
 * 64×64, one report per image) and an HTTP generator streaming 8 steps 25 ms apart (the fake
 * endpoint of the tests, in this process) where progress pushes really flow while it runs.
 * `npm run bench:progress [jobs]`
 */
import WebSocket from 'ws';
import { startFakeGenerator } from '../test/fakes/generator-endpoint.ts';
import { enqueue, machine, quantile, report, startServer, UNLIMITED } from './lib.ts';

const JOBS = Number(process.argv[2] ?? 200);
const WARMUP = 10;

/** One job: enqueue, then wait for its last image; counts the progress frames seen. */
async function oneJob(
  url: string,
  body: Record<string, unknown>,
): Promise<{ ms: number; progress: number }> {
  const t0 = performance.now();
  const { ws } = await enqueue(url, body);
  let progress = 0;
  await new Promise<void>((resolve, reject) => {
    const socket = new WebSocket(ws);
    socket.on('message', (data, isBinary) => {
      if (isBinary) return;
      const frame = JSON.parse(String(data)) as { progress?: number };
      if (frame.progress !== undefined) progress++;
    });
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
  return { ms: performance.now() - t0, progress };
}

async function run(label: string, env: Record<string, string>, body: Record<string, unknown>) {
  const server = await startServer({
    WORKER_CONCURRENCY: '2',
    SAFETY: 'off',
    ...UNLIMITED,
    ...env,
  });
  try {
    for (let i = 0; i < WARMUP; i++) await oneJob(server.url, { ...body, seed: 1_000_000 + i });
    const before = await server.usage();
    const times: number[] = [];
    let frames = 0;
    for (let i = 0; i < JOBS; i++) {
      const { ms, progress } = await oneJob(server.url, { ...body, seed: i });
      times.push(ms);
      frames += progress;
    }
    const after = await server.usage();
    times.sort((a, b) => a - b);
    report(label, {
      jobs: JOBS,
      p50_ms: quantile(times, 0.5),
      p99_ms: quantile(times, 0.99),
      cpu_ms_per_job: (after.cpuMs - before.cpuMs) / JOBS,
      progress_frames_per_job: frames / JOBS,
    });
  } finally {
    await server.stop();
  }
}

process.stdout.write(`# ${await machine()}\n`);
const demo = { prompt: 'benchmark progress', width: 64, height: 64, count: 4 };
for (const ms of ['0', '250', '1'])
  await run(
    `demo 4×64² enqueue→last image, PROGRESS_PUSH_MS=${ms}`,
    { PROGRESS_PUSH_MS: ms },
    demo,
  );

const fake = await startFakeGenerator();
fake.streamSteps = 8;
fake.stepMs = 25;
fake.streamPreviews = true;
try {
  const streamed = { prompt: 'benchmark streamed progress', width: 64, height: 64, count: 1 };
  for (const ms of ['0', '250', '25'])
    await run(
      `http generator streaming 8 steps × 25 ms (previews), PROGRESS_PUSH_MS=${ms}`,
      { ...fake.env(), PROGRESS_PUSH_MS: ms },
      streamed,
    );
} finally {
  await fake.close();
}
