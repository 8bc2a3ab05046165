/** What the tests of each generator backend share: a request, a live signal, a failure, a run. */
import sharp from 'sharp';
import { expect } from 'vitest';
import { ImagineError } from '../../contracts/errors.ts';
import type { GenerateRequest } from '../../worker/generator.ts';
import { enqueueJob } from './enqueue.ts';
import { startTestImagine } from './imagine.ts';
import { followJob } from './ws.ts';

/** A one-image generate request of the given size (seed 99, 4 steps). */
export function generateRequest(width: number, height: number): GenerateRequest {
  return { task: 'generate', prompt: 'a lighthouse at dusk', width, height, seeds: [99], steps: 4 };
}

/** A signal that never aborts. */
export const live = (): AbortSignal => new AbortController().signal;

/** The coded error a promise rejects with (the test fails if it resolves or throws another). */
export async function failure(p: Promise<unknown>): Promise<ImagineError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ImagineError);
    return err as ImagineError;
  }
  throw new Error('expected a failure');
}

/**
 * Run one job through the whole pipeline (relay, queue, worker) with `env` choosing the backend,
 * assert the image that reaches the WebSocket has the asked size and is not labelled demo.
 */
export async function generateThroughPipeline(
  env: Record<string, string>,
  job: { width: number; height: number; seed: number; steps?: number },
): Promise<void> {
  const app = await startTestImagine(env);
  try {
    const { ws, demo } = await enqueueJob(app.url, 'a fox in space', job);
    expect(demo).toBe(false);
    const got = await followJob(ws);
    const meta = await sharp(got.binaries[0]!).metadata();
    expect([meta.width, meta.height]).toEqual([job.width, job.height]);
  } finally {
    await app.stop();
  }
}
