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

  it('an abort stops it before the next image', async () => {
    const controller = new AbortController();
    const run = new DemoGenerator().generate(
      { task: 'generate', prompt: 'a fox', width: 64, height: 64, seeds: [1, 2, 3, 4], steps: 4 },
      { signal: controller.signal, onProgress: (p) => p.step === 1 && controller.abort() },
    );
    await expect(run).rejects.toThrow();
  });
});
