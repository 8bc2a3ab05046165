import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { GenerateProgress } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';

describe('demo generator progress', () => {
  it('reports one honest step per image made, in order, each with a small preview of it', async () => {
    const seen: GenerateProgress[] = [];
    const images = await new DemoGenerator().generate(
      { task: 'generate', prompt: 'a fox', width: 128, height: 64, seeds: [1, 2, 3], steps: 4 },
      { signal: new AbortController().signal, onProgress: (p) => seen.push(p) },
    );
    expect(images).toHaveLength(3);
    expect(seen.map((p) => [p.step, p.steps])).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    for (const p of seen) {
      expect(p.preview?.contentType).toBe('image/jpeg');
      const meta = await sharp(p.preview!.bytes).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 64, 32]);
    }
  });

  it('a large image and its preview are the same picture, at the sizes asked for', async () => {
    const seen: GenerateProgress[] = [];
    const [image] = await new DemoGenerator().generate(
      { task: 'generate', prompt: 'a fox', width: 1000, height: 333, seeds: [5], steps: 4 },
      { signal: new AbortController().signal, onProgress: (p) => seen.push(p) },
    );
    const full = await sharp(image!.bytes).metadata();
    expect([full.format, full.width, full.height]).toEqual(['png', 1000, 333]);
    // What a downscale of the PNG itself gives, size and colour.
    const fromPng = await sharp(image!.bytes)
      .resize(64, 64, { fit: 'inside' })
      .jpeg({ quality: 60 })
      .toBuffer();
    const preview = seen[0]!.preview!.bytes;
    const [a, b] = await Promise.all([sharp(preview).stats(), sharp(fromPng).stats()]);
    const [pa, pb] = await Promise.all([sharp(preview).metadata(), sharp(fromPng).metadata()]);
    expect([pa.width, pa.height]).toEqual([pb.width, pb.height]);
    for (let c = 0; c < 3; c++)
      expect(Math.abs(a.channels[c]!.mean - b.channels[c]!.mean)).toBeLessThan(3);
  });

  it('makes no preview for a step whose preview would not be used, and still reports the step', async () => {
    const seen: GenerateProgress[] = [];
    const asked: Array<[number, number]> = [];
    const images = await new DemoGenerator().generate(
      { task: 'generate', prompt: 'a fox', width: 64, height: 64, seeds: [1, 2, 3], steps: 4 },
      {
        signal: new AbortController().signal,
        onProgress: (p) => seen.push(p),
        // As the worker answers: the last step's preview is never shown (the result follows).
        wantsPreview: (step, steps) => {
          asked.push([step, steps]);
          return step < steps;
        },
      },
    );
    expect(images).toHaveLength(3);
    expect(seen.map((p) => [p.step, p.steps, p.preview?.contentType])).toEqual([
      [1, 3, 'image/jpeg'],
      [2, 3, 'image/jpeg'],
      [3, 3, undefined],
    ]);
    expect(asked.map(([step]) => step)).toContain(3);
  });

  it('an abort stops it before the next image', async () => {
    const controller = new AbortController();
    const run = new DemoGenerator().generate(
      { task: 'generate', prompt: 'a fox', width: 64, height: 64, seeds: [1, 2, 3, 4], steps: 4 },
      { signal: controller.signal, onProgress: (p) => p.step === 1 && controller.abort() },
    );
    await expect(run).rejects.toThrow();
  });
});
