/** A job of N through the whole pipeline: one generator call, N images, each reproducible alone. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GeneratedImage, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

/** The demo generator, recording each call it gets. */
class CountingGenerator implements Generator {
  readonly name = 'demo';
  readonly calls: GenerateRequest[] = [];
  private readonly demo = new DemoGenerator();
  generate(req: GenerateRequest, opts: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    this.calls.push(req);
    return this.demo.generate(req, opts);
  }
}

describe('a job of four', () => {
  const generator = new CountingGenerator();
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    app = await startTestImagine({}, { generator });
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('is one generator call for four seeds; image i alone, with its seed, is the same image', async () => {
    const job = await enqueueJob(app.url, 'four lighthouses', {
      width: 64,
      height: 64,
      count: 4,
      seed: 2 ** 32 - 2,
    });
    const got = await followJob(job.ws);
    const seeds = [2 ** 32 - 2, 2 ** 32 - 1, 0, 1];
    expect(generator.calls.filter((c) => c.prompt === 'four lighthouses')).toHaveLength(1);
    expect(generator.calls.at(-1)).toMatchObject({ task: 'generate', seeds });
    const frames = got.texts.filter((t) => t.type === 'image');
    expect(frames.map((f) => f.seed)).toEqual(seeds);
    expect(got.binaries).toHaveLength(4);
    expect(new Set(got.binaries.map((b) => b.toString('base64'))).size).toBe(4);
    // Image 3 (seed 0) made again alone, as a job of one with that seed.
    const alone = await enqueueJob(app.url, 'four lighthouses', {
      width: 64,
      height: 64,
      count: 1,
      seed: 0,
    });
    const again = await followJob(alone.ws);
    expect(again.binaries).toHaveLength(1);
    expect(again.binaries[0]!.equals(got.binaries[2]!)).toBe(true);
  });
});
