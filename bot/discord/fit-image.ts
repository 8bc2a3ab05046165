/**
 * Make an image fit an upload limit: re-encode as high-quality WebP/JPEG, then lower quality,
 * then smaller, until it fits. Discord answers an oversized upload with 413 / 40005; users
 * should never see that.
 */
import sharp from 'sharp';
import { ImagineError } from '../../contracts/errors.ts';

/** A fitted image. */
export interface FittedImage {
  bytes: Buffer;
  contentType: string;
  /** File extension without the dot. */
  ext: string;
  /** True when the bytes were re-encoded. */
  reencoded: boolean;
}

const EXT: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
};

/** Encodings tried in order at full size, best first. */
const LADDER = [
  { format: 'webp', quality: 92 },
  { format: 'jpeg', quality: 90 },
  { format: 'webp', quality: 80 },
  { format: 'jpeg', quality: 78 },
  { format: 'webp', quality: 65 },
] as const;

async function encode(
  input: Buffer,
  format: 'webp' | 'jpeg',
  quality: number,
  width?: number,
): Promise<Buffer> {
  let img = sharp(input);
  if (width) img = img.resize({ width });
  return format === 'webp'
    ? img.webp({ quality, effort: 4 }).toBuffer()
    : img.jpeg({ quality, mozjpeg: true }).toBuffer();
}

function fitted(bytes: Buffer, format: 'webp' | 'jpeg'): FittedImage {
  return {
    bytes,
    contentType: `image/${format}`,
    ext: format === 'jpeg' ? 'jpg' : 'webp',
    reencoded: true,
  };
}

/** Return the image as is when it fits `limit` bytes, else a re-encoding that does. */
export async function fitImage(
  bytes: Buffer,
  contentType: string,
  limit: number,
): Promise<FittedImage> {
  if (bytes.length <= limit)
    return { bytes, contentType, ext: EXT[contentType] ?? 'png', reencoded: false };
  for (const step of LADDER) {
    const out = await encode(bytes, step.format, step.quality);
    if (out.length <= limit) return fitted(out, step.format);
  }
  const meta = await sharp(bytes).metadata();
  let width = meta.width ?? 1024;
  while (width > 64) {
    width = Math.max(64, Math.floor(width * 0.75));
    const out = await encode(bytes, 'webp', 75, width);
    if (out.length <= limit) return fitted(out, 'webp');
  }
  throw new ImagineError('PAYLOAD_TOO_LARGE', `image cannot be made to fit ${limit} bytes`);
}
