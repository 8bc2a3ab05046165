/**
 * The demo generator: not AI. Deterministic abstract art from (prompt, seed): soft colour fields
 * from a palette picked by hashing both, rendered to PNG (node's zlib for what is rendered at full
 * size, sharp to enlarge and encode larger ones). Fast enough to make the
 * pipeline itself the thing being measured. Every task is honest about what it is:
 * - generate: the colour fields of (prompt, seed).
 * - vary: the input image blended with the colour fields of (prompt, seed) by `strength`, then
 *   its hues turned by a seeded angle scaled by `strength`: a visible, seeded transform of the
 *   input, not image-to-image AI.
 * - upscale: the input enlarged 2× (Lanczos), sharpened, and seeded fine grain added at
 *   `strength`: new high-frequency pixels that a resample alone would not have.
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { constants, crc32, deflate, deflateSync } from 'node:zlib';
import type SharpModule from 'sharp';

// sharp (libvips) is loaded with the first image, so a relay that only names this generator
// never holds it in memory.
let sharpLoaded: Promise<typeof SharpModule> | undefined;
const loadSharp = () => {
  sharpLoaded ??= import('sharp').then((m) => m.default);
  return sharpLoaded;
};

import { ImagineError } from '../../contracts/errors.ts';
import type {
  GeneratedImage,
  GenerateOptions,
  GenerateRequest,
  Generator,
  GeneratorInput,
} from '../generator.ts';

/** Side of the demo's progress previews, pixels (a downscale of the image just made). */
const PREVIEW_SIDE = 64;
/**
 * The colour fields are smooth (no feature is finer than ~6% of the image), so they are computed
 * on a grid of at most this many pixels a side and enlarged by sharp: a 1024² image costs the
 * event loop a 256² render (1/16 of the work) and the enlarging and encoding run in libvips'
 * own threads, off the loop that the relay and the worker share.
 */
const RENDER_SIDE = 256;

/** The size the colour fields are computed at for a `width`×`height` image. */
function renderSize(width: number, height: number): { width: number; height: number } {
  const scale = Math.min(1, RENDER_SIDE / Math.max(width, height));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

/** The size sharp's `fit: 'inside'` gives `width`×`height` in a PREVIEW_SIDE square. */
function previewSize(width: number, height: number): { width: number; height: number } {
  const factor = Math.max(width / PREVIEW_SIDE, height / PREVIEW_SIDE);
  return {
    width: Math.max(1, Math.round(width / factor)),
    height: Math.max(1, Math.round(height / factor)),
  };
}

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
export function renderDemoPixels(req: {
  prompt: string;
  seed: number;
  width: number;
  height: number;
}): Buffer {
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
  // The blobs as flat arrays, and the wave's sine by angle addition: sin(a + b) = sin a cos b +
  // cos a sin b, with a per row and b per column, so a pixel costs no sine of its own (the
  // sines were a third of the render).
  const n = blobs.length;
  const bx = new Float64Array(n);
  const by = new Float64Array(n);
  const br2 = new Float64Array(n);
  const near = new Float64Array(n);
  const colors = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) {
    const blob = blobs[i]!;
    bx[i] = blob.x;
    by[i] = blob.y;
    br2[i] = blob.r2;
    colors[i * 3] = blob.color[0];
    colors[i * 3 + 1] = blob.color[1];
    colors[i * 3 + 2] = blob.color[2];
  }
  const k = waveF * Math.PI * 2;
  const sinX = new Float64Array(width);
  const cosX = new Float64Array(width);
  for (let x = 0; x < width; x++) {
    sinX[x] = Math.sin(x * k);
    cosX[x] = Math.cos(x * k);
  }
  const out = Buffer.allocUnsafe(width * height * 3);
  let o = 0;
  for (let y = 0; y < height; y++) {
    const rowAngle = y * 0.6 * k + wavePhase;
    const sinY = Math.sin(rowAngle);
    const cosY = Math.cos(rowAngle);
    for (let i = 0; i < n; i++) {
      const dy = y - by[i]!;
      near[i] = dy * dy + br2[i]! * 0.05;
    }
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      let wsum = 0;
      for (let i = 0; i < n; i++) {
        const dx = x - bx[i]!;
        const w = br2[i]! / (dx * dx + near[i]!);
        r += colors[i * 3]! * w;
        g += colors[i * 3 + 1]! * w;
        b += colors[i * 3 + 2]! * w;
        wsum += w;
      }
      const shade = (0.9 + 0.1 * (sinY * cosX[x]! + cosY * sinX[x]!)) / wsum;
      out[o++] = Math.min(255, r * shade);
      out[o++] = Math.min(255, g * shade);
      out[o++] = Math.min(255, b * shade);
    }
  }
  return out;
}

/** Raw pixels up to this many bytes are deflated on the event loop (~0.1 ms for 64×64). */
const SYNC_DEFLATE_BYTES = 64 * 1024;
const deflateAsync = promisify(deflate);

/** One PNG chunk: length, type, data, CRC-32 of type and data. */
function pngChunk(type: string, data: Buffer): Buffer {
  const chunk = Buffer.allocUnsafe(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return chunk;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PNG_END = pngChunk('IEND', Buffer.alloc(0));

/**
 * Raw RGB pixels as an 8-bit truecolour PNG, with node's own zlib. For the small images the demo
 * renders itself, sharp's per-call cost (options marshalled into libvips, a pipeline per image)
 * was most of the encode; the PNG container is three chunks around zlib's deflate. Each row is
 * filtered Up (the difference from the row above): the colour fields are smooth, so the rows are
 * mostly small differences, which Huffman coding alone packs nearly as well as deflate's string
 * matching does, at about half its CPU (64×64: ~5.9 KB in ~90 µs against level 1's ~5.3 KB in
 * ~160 µs; 256²: 48 KB against 52 KB; sharp's level 6 on the raw rows: 10.9 and 116 KB).
 */
async function encodeRgbPng(pixels: Buffer, width: number, height: number): Promise<Buffer> {
  const stride = width * 3;
  const scanlines = Buffer.allocUnsafe((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const at = y * (stride + 1);
    const row = y * stride;
    if (y === 0) {
      scanlines[at] = 0; // filter None: no row above
      pixels.copy(scanlines, at + 1, 0, stride);
      continue;
    }
    scanlines[at] = 2; // filter Up
    for (let i = 0; i < stride; i++)
      scanlines[at + 1 + i] = (pixels[row + i]! - pixels[row - stride + i]!) & 0xff;
  }
  const options = { strategy: constants.Z_HUFFMAN_ONLY };
  const idat =
    scanlines.length <= SYNC_DEFLATE_BYTES
      ? deflateSync(scanlines, options)
      : await deflateAsync(scanlines, options);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', idat), PNG_END]);
}

/**
 * How sharp encodes the enlarged colour fields: zlib level 3, unfiltered. For 1024² ~12 ms of
 * CPU and ~350 KB against level 6's ~18 ms and ~317 KB (level 1: ~9 ms but ~650 KB; adaptive
 * filtering: 85 KB but 43 ms). The smooth fields compress well at any level.
 */
const LARGE_PNG = { compressionLevel: 3, adaptiveFiltering: false } as const;

async function png(pixels: Buffer, width: number, height: number): Promise<Buffer> {
  const sharp = await loadSharp();
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 6, adaptiveFiltering: false })
    .toBuffer();
}

/** The colour fields of (prompt, seed) as a sharp pipeline at `width`×`height`. */
async function art(prompt: string, seed: number, width: number, height: number) {
  const sharp = await loadSharp();
  const small = renderSize(width, height);
  const pixels = renderDemoPixels({ prompt, seed, ...small });
  const image = sharp(pixels, { raw: { ...small, channels: 3 } });
  if (small.width === width && small.height === height) return image;
  // Enlarged by repeating pixels, then blurred over about the repeat: on these smooth fields
  // within 2 levels of a bicubic enlargement, at a fraction of libvips' cost (1024² from 256²:
  // ~5 ms of CPU against ~38 ms, the PNG after it ~20 ms against ~60 ms).
  const factor = Math.max(width / small.width, height / small.height);
  return image
    .resize(width, height, { fit: 'fill', kernel: 'nearest' })
    .blur(Math.max(0.5, 0.4 * factor));
}

/** The input as raw RGB pixels of exactly `width`×`height` (cover fit, centred). */
async function inputPixels(input: GeneratorInput, width: number, height: number): Promise<Buffer> {
  const sharp = await loadSharp();
  return sharp(input.bytes)
    .rotate()
    .resize(width, height, { fit: 'cover', kernel: 'lanczos3' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer();
}

/** Vary: blend the input with (prompt, seed)'s colour fields, then turn hues by a seeded angle. */
async function vary(req: GenerateRequest, input: GeneratorInput, seed: number): Promise<Buffer> {
  const { width, height } = req;
  const strength = req.strength ?? 0.75;
  const base = await inputPixels(input, width, height);
  const fields = await (await art(req.prompt, seed, width, height)).raw().toBuffer();
  const mix = 0.6 * strength;
  const out = Buffer.allocUnsafe(base.length);
  for (let i = 0; i < base.length; i++) out[i] = base[i]! * (1 - mix) + fields[i]! * mix;
  const rand = prng(seed ^ 0x5eed);
  const hue = Math.round((rand() * 2 - 1) * 120 * strength);
  const sharp = await loadSharp();
  return sharp(out, { raw: { width, height, channels: 3 } })
    .modulate({ hue })
    .png({ compressionLevel: 6, adaptiveFiltering: false })
    .toBuffer();
}

/** Upscale: enlarge to width×height, sharpen, and add seeded fine grain at `strength`. */
async function upscale(req: GenerateRequest, input: GeneratorInput, seed: number): Promise<Buffer> {
  const { width, height } = req;
  const strength = req.strength ?? 0.3;
  const sharp = await loadSharp();
  const enlarged = await sharp(input.bytes)
    .rotate()
    .resize(width, height, { fit: 'cover', kernel: 'lanczos3' })
    .removeAlpha()
    .toColourspace('srgb')
    .sharpen({ sigma: 1 })
    .raw()
    .toBuffer();
  const rand = prng(seed);
  const amplitude = 40 * strength;
  for (let p = 0; p < enlarged.length; p += 3) {
    const grain = (rand() - 0.5) * amplitude;
    for (let c = 0; c < 3; c++) {
      const v = enlarged[p + c]! + grain;
      enlarged[p + c] = Math.max(0, Math.min(255, v));
    }
  }
  return png(enlarged, width, height);
}

/** The built-in demo generator. */
export class DemoGenerator implements Generator {
  readonly name = 'demo';

  /**
   * Progress is honest about the demo's own work: one step per image made (pixels rendered and
   * encoded), reported after it, with a small JPEG downscale of that image as the preview.
   */
  async generate(
    req: GenerateRequest,
    { signal, onProgress, wantsPreview }: GenerateOptions,
  ): Promise<GeneratedImage[]> {
    signal.throwIfAborted();
    if (req.task !== 'generate' && !req.input)
      throw new ImagineError('GENERATION_FAILED', `a ${req.task} needs an input image`);
    const images: GeneratedImage[] = [];
    for (const seed of req.seeds) {
      let bytes: Buffer;
      let preview: Buffer | undefined;
      // Asked once per step, before the image is made, so the preview can be cut on the way.
      const wanted =
        onProgress !== undefined && (wantsPreview?.(images.length + 1, req.seeds.length) ?? true);
      if (req.task === 'vary') bytes = await vary(req, req.input!, seed);
      else if (req.task === 'upscale') bytes = await upscale(req, req.input!, seed);
      else {
        const small = renderSize(req.width, req.height);
        const cutPreview = (image: ReturnType<typeof SharpModule>) =>
          image
            .resize({ ...previewSize(req.width, req.height), fit: 'fill' })
            .jpeg({ quality: 60 })
            .toBuffer();
        if (small.width === req.width && small.height === req.height) {
          // Rendered at full size: encoded without sharp (the same bytes whether or not a preview
          // is cut, so an image of a grid and the same seed alone are the same file).
          const pixels = renderDemoPixels({ prompt: req.prompt, seed, ...small });
          const sharp = wanted ? await loadSharp() : undefined;
          [bytes, preview] = await Promise.all([
            encodeRgbPng(pixels, req.width, req.height),
            sharp ? cutPreview(sharp(pixels, { raw: { ...small, channels: 3 } })) : undefined,
          ]);
        } else {
          const image = await art(req.prompt, seed, req.width, req.height);
          // The preview is cut from the same pixels, so the PNG is never decoded again for it;
          // without one the pipeline is not cloned (a clone copies its raw input, ~196 KB).
          const encoded = (wanted ? image.clone() : image).png(LARGE_PNG);
          [bytes, preview] = await Promise.all([
            encoded.toBuffer(),
            wanted ? cutPreview(image) : undefined,
          ]);
        }
      }
      signal.throwIfAborted();
      images.push({ bytes, contentType: 'image/png', seed, width: req.width, height: req.height });
      if (onProgress) {
        if (!wanted) {
          onProgress({ step: images.length, steps: req.seeds.length });
          continue;
        }
        preview ??= await (await loadSharp())(bytes)
          .resize(PREVIEW_SIDE, PREVIEW_SIDE, { fit: 'inside' })
          .jpeg({ quality: 60 })
          .toBuffer();
        onProgress({
          step: images.length,
          steps: req.seeds.length,
          preview: { bytes: preview, contentType: 'image/jpeg' },
        });
      }
    }
    return images;
  }
}
