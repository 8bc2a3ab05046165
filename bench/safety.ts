/**
 * Output safety cost: for each bundled NSFWJS model on each CPU tfjs backend, in a fresh process
 * (tfjs's backend is per process): model load time, RSS growth, and decode + inference time per
 * 1024×1024 demo image (wall and the process's own CPU time); then the worker's throughput on
 * 1024² demo jobs with safety off and on.
 * `npm run bench:safety [images] [jobs]`
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  decideSafety,
  SAFETY_BACKENDS,
  SAFETY_MODELS,
  type SafetyBackend,
  type SafetyModel,
  type SafetyPolicy,
} from '../contracts/safety.ts';
import { DemoGenerator } from '../worker/generators/demo.ts';
import { createNsfwClassifier } from '../worker/safety/classifier.ts';
import { machine, quantile, report } from './lib.ts';

const IMAGES = Number(process.argv[2] ?? 20);
const JOBS = Number(process.argv[3] ?? 20);
const SIDE = 1024;
const POLICY: SafetyPolicy = { mode: 'block', threshold: 0.6 };

async function demoImages(count: number): Promise<Buffer[]> {
  const demo = new DemoGenerator();
  const signal = new AbortController().signal;
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const [image] = await demo.generate(
      {
        task: 'generate',
        prompt: `safety bench ${i}`,
        seeds: [i],
        width: SIDE,
        height: SIDE,
        steps: 4,
      },
      { signal },
    );
    out.push(image!.bytes);
  }
  return out;
}

/** Child mode: measure one model on one backend and print one JSON line. */
async function measureOne(model: SafetyModel, backend: SafetyBackend): Promise<void> {
  const images = await demoImages(IMAGES);
  const classifier = createNsfwClassifier({ model, backend });
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  await classifier.warm();
  const loadMs = performance.now() - t0;
  const rssLoaded = process.memoryUsage().rss;
  await classifier.classify(images[0]!);
  const times: number[] = [];
  let maxScore = 0;
  const cpu0 = process.cpuUsage();
  for (const image of images) {
    const t = performance.now();
    const { score } = await classifier.classify(image);
    times.push(performance.now() - t);
    maxScore = Math.max(maxScore, score);
  }
  const cpu = process.cpuUsage(cpu0);
  times.sort((a, b) => a - b);
  process.stdout.write(
    `${JSON.stringify({
      load_ms: loadMs,
      rss_load_mb: (rssLoaded - rss0) / 2 ** 20,
      rss_after_mb: (process.memoryUsage().rss - rss0) / 2 ** 20,
      p50_ms: quantile(times, 0.5),
      p90_ms: quantile(times, 0.9),
      cpu_ms_per_image: (cpu.user + cpu.system) / 1000 / images.length,
      max_demo_score: maxScore,
    })}\n`,
  );
}

function runChild(model: SafetyModel, backend: SafetyBackend): Promise<Record<string, number>> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [self, String(IMAGES), String(JOBS), '--one', model, backend],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.trim().split('\n').at(-1);
      if (code !== 0 || !line) reject(new Error(`${model}@${backend} exited ${code}`));
      else resolve(JSON.parse(line) as Record<string, number>);
    });
  });
}

/** Demo 1024² images made one after another, each classified or not (the worker's own work). */
async function throughput(withSafety: boolean): Promise<Record<string, number>> {
  const demo = new DemoGenerator();
  const classifier = withSafety ? createNsfwClassifier() : undefined;
  if (classifier) await classifier.warm();
  const signal = new AbortController().signal;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let flagged = 0;
  for (let i = 0; i < JOBS; i++) {
    const [image] = await demo.generate(
      {
        task: 'generate',
        prompt: `throughput ${i}`,
        seeds: [i],
        width: SIDE,
        height: SIDE,
        steps: 4,
      },
      { signal },
    );
    if (
      classifier &&
      decideSafety(POLICY, (await classifier.classify(image!.bytes)).score) !== 'deliver'
    )
      flagged++;
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    jobs: JOBS,
    flagged,
    jobs_per_s: JOBS / wall,
    cpu_ms_per_job: (cpu.user + cpu.system) / 1000 / JOBS,
  };
}

const oneAt = process.argv.indexOf('--one');
if (oneAt > 0) {
  await measureOne(
    process.argv[oneAt + 1] as SafetyModel,
    process.argv[oneAt + 2] as SafetyBackend,
  );
} else {
  process.stdout.write(`# ${await machine()}\n`);
  for (const backend of SAFETY_BACKENDS)
    for (const model of SAFETY_MODELS) {
      // The plain JS backend is an order of magnitude slower; InceptionV3 on it takes minutes.
      if (backend === 'cpu' && model !== 'mobilenet_v2') continue;
      report(
        `classifier ${model}@${backend} (${IMAGES} demo images ${SIDE}x${SIDE})`,
        await runChild(model, backend),
      );
    }
  report(`worker ${SIDE}x${SIDE} demo jobs, safety off`, await throughput(false));
  report(`worker ${SIDE}x${SIDE} demo jobs, safety on (mobilenet_v2@wasm)`, await throughput(true));
}
