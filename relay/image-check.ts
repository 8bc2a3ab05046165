/**
 * Before an image is delivered, check that it is one: its structure walked end to end (PNG
 * chunks and their CRCs up to IEND, JPEG segments up to SOS and an EOI at the end, WebP's RIFF
 * chunk sizes) and its header decoded by sharp for the dimensions. Magic bytes followed by
 * garbage are refused. Cheap: no pixel is decoded.
 */
import { crc32 } from 'node:zlib';
import sharp, { type Metadata } from 'sharp';
import { ImagineError } from '../contracts/errors.ts';
import type { ImageType } from '../contracts/image-types.ts';

const damaged = (why: string) => new ImagineError('INVALID_PUSH', `image is damaged: ${why}`);

function walkPng(b: Buffer): void {
  let at = 8;
  let first = true;
  let idat = false;
  while (at + 12 <= b.length) {
    const length = b.readUInt32BE(at);
    const type = b.toString('latin1', at + 4, at + 8);
    const end = at + 12 + length;
    if (length > 0x7fffffff || end > b.length) throw damaged(`PNG chunk ${type} runs past the end`);
    if (first && (type !== 'IHDR' || length !== 13)) throw damaged('PNG does not start with IHDR');
    first = false;
    if (crc32(b.subarray(at + 4, at + 8 + length)) !== b.readUInt32BE(at + 8 + length))
      throw damaged(`PNG chunk ${type} fails its CRC`);
    if (type === 'IDAT') idat = true;
    at = end;
    if (type === 'IEND') {
      if (!idat) throw damaged('PNG has no image data');
      if (at !== b.length) throw damaged('bytes after PNG IEND');
      return;
    }
  }
  throw damaged('PNG ends before IEND');
}

function walkJpeg(b: Buffer): void {
  let at = 2;
  let frame = false;
  while (at + 4 <= b.length) {
    if (b[at] !== 0xff) throw damaged('JPEG segment does not start with a marker');
    const marker = b[at + 1]!;
    if (marker === 0xff) {
      at++;
      continue;
    }
    if (marker === 0xd8 || marker === 0xd9 || (marker >= 0xd0 && marker <= 0xd7))
      throw damaged('JPEG marker out of place');
    const length = b.readUInt16BE(at + 2);
    if (length < 2 || at + 2 + length > b.length) throw damaged('JPEG segment runs past the end');
    // SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc)
      frame = true;
    if (marker === 0xda) {
      if (!frame) throw damaged('JPEG has no frame header before its scan');
      if (b[b.length - 2] !== 0xff || b[b.length - 1] !== 0xd9)
        throw damaged('JPEG does not end with EOI');
      return;
    }
    at += 2 + length;
  }
  throw damaged('JPEG ends before its scan');
}

function walkWebp(b: Buffer): void {
  if (b.readUInt32LE(4) + 8 !== b.length) throw damaged('WebP RIFF size does not match');
  let at = 12;
  let image = false;
  while (at + 8 <= b.length) {
    const type = b.toString('latin1', at, at + 4);
    const size = b.readUInt32LE(at + 4);
    const end = at + 8 + size + (size % 2);
    if (end > b.length) throw damaged(`WebP chunk ${type} runs past the end`);
    if (type === 'VP8 ' || type === 'VP8L') image = true;
    at = end;
  }
  if (at !== b.length) throw damaged('WebP has trailing bytes');
  if (!image) throw damaged('WebP has no image data');
}

/** Check that `bytes` are a whole image of `type`; returns its decoded size. */
export async function checkImage(
  bytes: Buffer,
  type: ImageType,
): Promise<{ width: number; height: number }> {
  try {
    if (type === 'image/png') walkPng(bytes);
    else if (type === 'image/jpeg') walkJpeg(bytes);
    else walkWebp(bytes);
  } catch (err) {
    if (err instanceof ImagineError) throw err;
    throw damaged('its structure cannot be read');
  }
  let meta: Metadata;
  try {
    meta = await sharp(bytes).metadata();
  } catch (err) {
    throw new ImagineError('INVALID_PUSH', 'image is damaged: its header cannot be decoded', {
      cause: err,
    });
  }
  if (!meta.width || !meta.height) throw damaged('it has no dimensions');
  return { width: meta.width, height: meta.height };
}
