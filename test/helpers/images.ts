/** Small real images for tests. */
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';

/** A solid PNG of the given size. */
export function pngOf(
  width: number,
  height: number,
  rgb = { r: 200, g: 80, b: 40 },
): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: rgb } })
    .png()
    .toBuffer();
}

/** A PNG of random noise (it barely compresses: ~width × height × 3 bytes). */
export function noisePng(width: number, height: number): Promise<Buffer> {
  const pixels = randomBytes(width * height * 3);
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}
