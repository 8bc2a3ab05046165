import { createHash } from 'node:crypto';
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

  it('render the colour fields pixel for pixel as the per-pixel formula does', () => {
    // The formula written plainly (one sine per pixel, blobs as objects): the renderer's flat
    // arrays and angle-addition sines are a faster way to the same pixels.
    const reference = (prompt: string, seed: number, width: number, height: number) => {
      const digest = createHash('sha256').update(`${seed}\u0000${prompt}`).digest();
      let a = digest.readUInt32LE(0);
      const rand = () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const hsl = (h: number, s: number, l: number) => {
        const k = (n: number) => (n + h * 12) % 12;
        const m = s * Math.min(l, 1 - l);
        const f = (n: number) => l - m * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
        return [f(0) * 255, f(8) * 255, f(4) * 255] as const;
      };
      const baseHue = rand();
      const blobs = Array.from({ length: 5 + Math.floor(rand() * 3) }, (_, i) => ({
        x: rand() * width,
        y: rand() * height,
        r2: (0.08 + rand() * 0.25) * width * height,
        color: hsl(
          (baseHue + i * (0.08 + rand() * 0.12)) % 1,
          0.55 + rand() * 0.35,
          0.45 + rand() * 0.25,
        ),
      }));
      const waveF = (2 + rand() * 6) / Math.max(width, height);
      const wavePhase = rand() * Math.PI * 2;
      const out = Buffer.alloc(width * height * 3);
      let o = 0;
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) {
          const sum = [0, 0, 0];
          let wsum = 0;
          for (const blob of blobs) {
            const w = blob.r2 / ((x - blob.x) ** 2 + (y - blob.y) ** 2 + blob.r2 * 0.05);
            for (let c = 0; c < 3; c++) sum[c]! += blob.color[c]! * w;
            wsum += w;
          }
          const shade = 0.9 + 0.1 * Math.sin((x + y * 0.6) * waveF * Math.PI * 2 + wavePhase);
          for (let c = 0; c < 3; c++) out[o++] = Math.min(255, (sum[c]! / wsum) * shade);
        }
      return out;
    };
    for (const [width, height, seed] of [
      [64, 64, 1],
      [200, 48, 2],
      [37, 91, 3],
      [256, 256, 4],
    ] as const) {
      const rendered = renderDemoPixels({ prompt: 'a lighthouse', seed, width, height });
      const expected = reference('a lighthouse', seed, width, height);
      let worst = 0;
      for (let i = 0; i < expected.length; i++)
        worst = Math.max(worst, Math.abs(rendered[i]! - expected[i]!));
      // Floating-point order differs, so a value may round to the next level, never further.
      expect(worst).toBeLessThanOrEqual(1);
    }
  });
});
