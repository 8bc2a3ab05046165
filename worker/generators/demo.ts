/**
 * The demo generator: not AI. Deterministic abstract art from (prompt, seed): soft colour fields
 * from a palette picked by hashing both, rendered to PNG with sharp. Fast enough to make the
 * pipeline itself the thing being measured.
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import type { GeneratedImage, GenerateRequest, Generator } from '../generator.ts';

/** A small seeded PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hsl(h: number, s: number, l: number): [number, number, number] {
  const k = (n: number) => (n + h * 12) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [f(0) * 255, f(8) * 255, f(4) * 255];
}

/** Render raw RGB pixels for a request (exported for tests of determinism). */
export function renderDemoPixels(
  req: Pick<GenerateRequest, 'prompt' | 'seed' | 'width' | 'height'>,
): Buffer {
  const digest = createHash('sha256').update(`${req.seed}\u0000${req.prompt}`).digest();
  const rand = prng(digest.readUInt32LE(0));
  const { width, height } = req;
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
  const out = Buffer.allocUnsafe(width * height * 3);
  let o = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      let wsum = 0;
      for (const blob of blobs) {
        const dx = x - blob.x;
        const dy = y - blob.y;
        const w = blob.r2 / (dx * dx + dy * dy + blob.r2 * 0.05);
        r += blob.color[0] * w;
        g += blob.color[1] * w;
        b += blob.color[2] * w;
        wsum += w;
      }
      const shade = 0.9 + 0.1 * Math.sin((x + y * 0.6) * waveF * Math.PI * 2 + wavePhase);
      out[o++] = Math.min(255, (r / wsum) * shade);
      out[o++] = Math.min(255, (g / wsum) * shade);
      out[o++] = Math.min(255, (b / wsum) * shade);
    }
  }
  return out;
}

/** The built-in demo generator. */
export class DemoGenerator implements Generator {
  readonly name = 'demo';

  async generate(
    req: GenerateRequest,
    { signal }: { signal: AbortSignal },
  ): Promise<GeneratedImage> {
    signal.throwIfAborted();
    const pixels = renderDemoPixels(req);
    const bytes = await sharp(pixels, {
      raw: { width: req.width, height: req.height, channels: 3 },
    })
      .png({ compressionLevel: 6, adaptiveFiltering: false })
      .toBuffer();
    signal.throwIfAborted();
    return {
      bytes,
      contentType: 'image/png',
      seed: req.seed,
      width: req.width,
      height: req.height,
    };
  }
}
