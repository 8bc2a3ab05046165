import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { checkImage } from '../../relay/image-check.ts';
import { DemoGenerator, renderDemoPixels } from '../../worker/generators/demo.ts';

const generate = (width: number, height: number, seed = 3) =>
  new DemoGenerator().generate(
    { task: 'generate', prompt: 'a lighthouse', width, height, seeds: [seed], steps: 4 },
    { signal: new AbortController().signal },
  );

describe('demo PNGs encoded without sharp', () => {
  it('decode to exactly the pixels rendered, and pass the relay’s image check', async () => {
    for (const [width, height] of [
      [64, 64],
      [200, 48],
      [256, 256],
    ] as const) {
      const [image] = await generate(width, height);
      const decoded = await sharp(image!.bytes).raw().toBuffer({ resolveWithObject: true });
      expect(decoded.info).toMatchObject({ format: 'raw', width, height, channels: 3 });
      const rendered = renderDemoPixels({ prompt: 'a lighthouse', seed: 3, width, height });
      expect(decoded.data.equals(rendered)).toBe(true);
      expect(await checkImage(image!.bytes, 'image/png')).toEqual({ width, height });
    }
  });

  it('are the same bytes whether or not a preview is cut with them', async () => {
    for (const size of [64, 200, 512]) {
      const req = { task: 'generate' as const, prompt: 'a lighthouse', width: size, height: size };
      const signal = new AbortController().signal;
      const demo = new DemoGenerator();
      const plain = await demo.generate({ ...req, seeds: [4], steps: 4 }, { signal });
      const previews: unknown[] = [];
      const inGrid = await demo.generate(
        { ...req, seeds: [3, 4], steps: 4 },
        { signal, onProgress: (p) => previews.push(p.preview), wantsPreview: () => true },
      );
      expect(previews.every(Boolean)).toBe(true);
      expect(inGrid[1]!.bytes.equals(plain[0]!.bytes)).toBe(true);
    }
  });

  it('are compressed like sharp’s own PNG of the same pixels', async () => {
    const [image] = await generate(64, 64, 9);
    const pixels = renderDemoPixels({ prompt: 'a lighthouse', seed: 9, width: 64, height: 64 });
    const bySharp = await sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } })
      .png({ compressionLevel: 6, adaptiveFiltering: false })
      .toBuffer();
    expect(image!.bytes.length).toBeLessThan(bySharp.length * 1.1);
  });
});
