/**
 * Make a generated image fit the relay's `PUSH_MAX_BYTES` before it is pushed: re-encode as
 * high-quality WebP, then JPEG, then lower quality, then smaller, until it fits. A generator may
 * answer up to `GENERATOR_MAX_BYTES`; the relay refuses more than `PUSH_MAX_BYTES`, and the user
 * should get an image, not a refusal.
 */
import sharp from 'sharp';
import { ImagineError } from '../contracts/errors.ts';
import type { ImageType } from '../contracts/image-types.ts';
import type { GeneratedImage } from './generator.ts';

/** Encodings tried at full size, best first. */
const LADDER = [
  { format: 'webp', quality: 90 },
  { format: 'jpeg', quality: 90 },
  { format: 'webp', quality: 75 },
  { format: 'jpeg', quality: 75 },
] as const;

function encode(input: Buffer, format: 'webp' | 'jpeg', quality: number, width?: number) {
  let img = sharp(input);
  if (width) img = img.resize({ width });
  return format === 'webp'
    ? img.webp({ quality, effort: 4 }).toBuffer({ resolveWithObject: true })
    : img.jpeg({ quality, mozjpeg: true }).toBuffer({ resolveWithObject: true });
}

/** The image as is when it fits `limit` bytes, else a re-encoding (or smaller copy) that does. */
export async function fitImage(image: GeneratedImage, limit: number): Promise<GeneratedImage> {
  if (image.bytes.length <= limit) return image;
  try {
    for (const step of LADDER) {
      const { data } = await encode(image.bytes, step.format, step.quality);
      if (data.length <= limit)
        return { ...image, bytes: data, contentType: `image/${step.format}` as ImageType };
    }
    let width = image.width;
    while (width > 64) {
      width = Math.max(64, Math.floor(width * 0.75));
      const { data, info } = await encode(image.bytes, 'webp', 75, width);
      if (data.length <= limit)
        return { ...image, bytes: data, contentType: 'image/webp', width, height: info.height };
    }
  } catch (err) {
    throw new ImagineError('GENERATOR_BAD_RESPONSE', 'the image could not be re-encoded', {
      cause: err,
    });
  }
  throw new ImagineError('GENERATOR_TOO_LARGE', `the image cannot be made to fit ${limit} bytes`);
}
