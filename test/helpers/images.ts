/** Small real images for tests. */
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
