/**
 * The check every input image passes (a worker's fetch, a web upload): magic bytes first, then a
 * full decode with sharp under a pixel cap, so only a real PNG, JPEG or WebP gets through.
 */
import type Sharp from 'sharp';
import { ImagineError } from './errors.ts';
import { type ImageType, sniffImageType } from './image-types.ts';

let sharpLoading: Promise<typeof Sharp> | undefined;

/**
 * sharp (libvips), loaded on first use and kept: a process that never decodes an image (a relay
 * whose pushes are plain PNGs and that gets no uploads) holds neither its code nor libvips.
 */
export function loadSharp(): Promise<typeof Sharp> {
  sharpLoading ??= import('sharp').then((m) => m.default);
  return sharpLoading;
}

/** Largest input decoded, in pixels (a decompression bomb is refused before it is decoded). */
export const INPUT_MAX_PIXELS = 8192 * 8192;

/** An image that passed {@link checkInputImage}, with its upright size. */
export interface CheckedImage {
  bytes: Buffer;
  contentType: ImageType;
  width: number;
  height: number;
}

/** Sniff the magic bytes, then decode with sharp: only a real PNG, JPEG or WebP passes. */
export async function checkInputImage(bytes: Buffer): Promise<CheckedImage> {
  const contentType = sniffImageType(bytes);
  if (!contentType)
    throw new ImagineError('INPUT_NOT_IMAGE', 'the input is not a PNG, JPEG or WebP image');
  const sharp = await loadSharp();
  try {
    const image = sharp(bytes, { limitInputPixels: INPUT_MAX_PIXELS, failOn: 'error' });
    const meta = await image.metadata();
    // Decoding the whole image is the check: a truncated or corrupt file fails here.
    await image.clone().resize(8, 8, { fit: 'fill' }).raw().toBuffer();
    if (!meta.width || !meta.height) throw new Error('no size');
    const rotated = (meta.orientation ?? 1) >= 5;
    return {
      bytes,
      contentType,
      width: rotated ? meta.height : meta.width,
      height: rotated ? meta.width : meta.height,
    };
  } catch (err) {
    throw new ImagineError(
      'INPUT_NOT_IMAGE',
      'the input image cannot be decoded (corrupt, truncated or too large)',
      {
        cause: err,
      },
    );
  }
}
