/**
 * A result the relay will not take still ends the job with a word: an image over
 * PUSH_MAX_BYTES is re-encoded to fit, and any other refusal (a 4xx) becomes a `failed` push.
 */
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import type { GeneratedImage, GenerateRequest, Generator } from '../../worker/generator.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

/** A generator that answers whatever `make` returns. */
function generatorOf(make: (req: GenerateRequest) => Promise<GeneratedImage>): Generator {
  return {
    name: 'test',
    generate: async (req) => Promise.all(req.seeds.map((seed) => make({ ...req, seeds: [seed] }))),
  };
}

/** Noise compresses badly: a 512² PNG of it is ~780 KB. */
async function noisePng(width: number, height: number): Promise<Buffer> {
  return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

describe('a push the relay refuses', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });

  it('an image over PUSH_MAX_BYTES is re-encoded to fit and delivered', async () => {
    const big = await noisePng(512, 512);
    const limit = 100_000;
    expect(big.length).toBeGreaterThan(limit);
    app = await startTestImagine(
      { PUSH_MAX_BYTES: String(limit) },
      {
        generator: generatorOf(async (req) => ({
          bytes: big,
          contentType: 'image/png',
          seed: req.seeds[0]!,
          width: 512,
          height: 512,
        })),
      },
    );
    const job = await enqueueJob(app.url, 'static on the screen', { width: 512, height: 512 });
    const got = await followJob(job.ws);
    expect(got.binaries).toHaveLength(1);
    const image = got.binaries[0]!;
    expect(image.length).toBeLessThanOrEqual(limit);
    const meta = await sharp(image).metadata();
    expect(['webp', 'jpeg']).toContain(meta.format);
    const states = got.texts.filter((t) => t.type === 'status').map((t) => t.state);
    expect(states.at(-1)).toBe('done');
  });

  it('every image of a job of three is fitted and pushed: the oversized second one too', async () => {
    const big = await noisePng(512, 512);
    const small = await noisePng(16, 16);
    const limit = 100_000;
    app = await startTestImagine(
      { PUSH_MAX_BYTES: String(limit) },
      {
        generator: {
          name: 'test',
          generate: async (req) =>
            req.seeds.map((seed, i) => ({
              bytes: i === 1 ? big : small,
              contentType: 'image/png' as const,
              seed,
              width: i === 1 ? 512 : 16,
              height: i === 1 ? 512 : 16,
            })),
        },
      },
    );
    const job = await enqueueJob(app.url, 'three screens', { width: 512, height: 512, count: 3 });
    const got = await followJob(job.ws);
    expect(got.binaries).toHaveLength(3);
    expect(got.binaries[0]!.equals(small)).toBe(true);
    expect(got.binaries[2]!.equals(small)).toBe(true);
    expect(got.binaries[1]!.length).toBeLessThanOrEqual(limit);
    expect(['webp', 'jpeg']).toContain((await sharp(got.binaries[1]!).metadata()).format);
    const frames = got.texts.filter((t) => t.type === 'image');
    expect(frames.map((f) => f.index)).toEqual([0, 1, 2]);
    const states = got.texts.filter((t) => t.type === 'status').map((t) => t.state);
    expect(states.at(-1)).toBe('done');
  });

  it('any other refusal ends the job as failed, with the relay’s reason', async () => {
    const png = await noisePng(16, 16);
    app = await startTestImagine(
      {},
      {
        // Claims JPEG, sends PNG: the relay answers 400 INVALID_PUSH.
        generator: generatorOf(async (req) => ({
          bytes: png,
          contentType: 'image/jpeg',
          seed: req.seeds[0]!,
          width: 16,
          height: 16,
        })),
      },
    );
    const job = await enqueueJob(app.url, 'a mislabelled image');
    const got = await followJob(job.ws);
    expect(got.binaries).toHaveLength(0);
    const last = got.texts.filter((t) => t.type === 'status').at(-1) as {
      state: string;
      error?: { code: string };
    };
    expect(last.state).toBe('failed');
    expect(last.error?.code).toBe('INVALID_PUSH');
  });
});
