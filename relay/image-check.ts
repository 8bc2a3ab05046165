/**
 * Before an image is delivered, check that it is one: its structure walked end to end (PNG
 * chunks and their CRCs up to IEND, JPEG segments up to SOS and an EOI at the end, WebP's RIFF
 * chunk sizes) and its header decoded by sharp for the dimensions. Magic bytes followed by
 * garbage are refused. Cheap: no pixel is decoded.
 *
 * The common PNG (what sharp and most generators write: IHDR, at most a pHYs, then IDAT) is
 * decided from the walk alone, without sharp: only headers sharp (libpng) accepts take that
 * path, so the answer is the same; anything else (other chunks before the image data, a palette,
 * an IHDR value out of the plain range) is still decoded by sharp. A PNG is walked in the pieces
 * it arrived in (the CRC carried across them), never joined; JPEG and WebP are joined first.
 */
import { createRequire } from 'node:module';
import { crc32 as zlibCrc32 } from 'node:zlib';
import type { Metadata } from 'sharp';
import { ImagineError } from '../contracts/errors.ts';
import { loadSharp } from '../contracts/image-check.ts';
import type { ImageType } from '../contracts/image-types.ts';

/**
 * CRC-32 (the PNG and zlib polynomial) of every PNG chunk: @node-rs/crc32's SIMD code (~3× zlib's
 * on a 1 MiB image here), or node:zlib's where no build of it loads on this platform.
 */
const crc32: (data: Buffer, initial?: number) => number = (() => {
  try {
    const rs = createRequire(import.meta.url)('@node-rs/crc32') as {
      crc32: (data: Buffer, initial?: number) => number;
    };
    return rs.crc32;
  } catch {
    return zlibCrc32;
  }
})();

const damaged = (why: string) => new ImagineError('INVALID_PUSH', `image is damaged: ${why}`);

/**
 * PNG colour types and the bit depths each allows (the PNG spec, as libpng checks them). A
 * palette (3) needs its PLTE checked, so it is left to sharp.
 */
const PLAIN_PNG_DEPTHS: Record<number, readonly number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  4: [8, 16],
  6: [8, 16],
};
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Largest side decided without sharp (libpng's own limit is higher). */
const PLAIN_PNG_MAX_SIDE = 16384;
/** sharp's default `limitInputPixels`: a bigger image is refused by `metadata()`. */
const SHARP_MAX_PIXELS = 0x3fff * 0x3fff;

/**
 * The size a plain PNG header declares (IHDR fields in the ranges libpng accepts, nothing
 * before the first IDAT but at most one 9-byte pHYs), or undefined when sharp must decide.
 */
function plainPngSize(b: Pieces, beforeIdat: readonly string[]): Size | undefined {
  // The whole signature (the sniff looked at four bytes; libpng compares all eight).
  const head = b.slice(0, 29);
  if (!head.subarray(0, 8).equals(PNG_SIGNATURE)) return undefined;
  const pHYs = beforeIdat.filter((t) => t === 'pHYs').length;
  if (beforeIdat.length !== pHYs || pHYs > 1) return undefined;
  const width = head.readUInt32BE(16);
  const height = head.readUInt32BE(20);
  const [depth, color, compression, filter, interlace] = head.subarray(24, 29);
  if (!PLAIN_PNG_DEPTHS[color!]?.includes(depth!)) return undefined;
  if (compression !== 0 || filter !== 0 || (interlace !== 0 && interlace !== 1)) return undefined;
  if (width < 1 || height < 1 || width > PLAIN_PNG_MAX_SIDE || height > PLAIN_PNG_MAX_SIDE)
    return undefined;
  if (width * height > SHARP_MAX_PIXELS) return undefined;
  return { width, height };
}

interface Size {
  width: number;
  height: number;
}

/** Random access over bytes that arrived in pieces, without joining them. */
class Pieces {
  readonly length: number;
  readonly #pieces: readonly Buffer[];
  /** Where each piece starts. */
  readonly #starts: number[] = [];
  /** The piece the last read was in (reads go forward: it is almost always the next one). */
  #at = 0;

  constructor(pieces: readonly Buffer[]) {
    this.#pieces = pieces;
    let n = 0;
    for (const p of pieces) {
      this.#starts.push(n);
      n += p.length;
    }
    this.length = n;
  }

  /** The index of the piece holding byte `at` (< length). */
  #find(at: number): number {
    let i = this.#at;
    if (at < this.#starts[i]!) i = 0;
    while (at >= this.#starts[i]! + this.#pieces[i]!.length) i++;
    this.#at = i;
    return i;
  }

  /** Bytes `start`..`end` (≤ length): a view when they lie in one piece, else a small copy. */
  slice(start: number, end: number): Buffer {
    const i = this.#find(start);
    const piece = this.#pieces[i]!;
    const from = start - this.#starts[i]!;
    if (from + (end - start) <= piece.length) return piece.subarray(from, from + end - start);
    const out = Buffer.allocUnsafe(end - start);
    let filled = 0;
    for (let j = i; filled < out.length; j++) {
      const p = this.#pieces[j]!;
      const a = j === i ? from : 0;
      const take = Math.min(p.length - a, out.length - filled);
      p.copy(out, filled, a, a + take);
      filled += take;
    }
    return out;
  }

  /** The big-endian 32-bit number at `at` (no view or copy made: a PNG has ~140 chunks a MiB). */
  u32(at: number): number {
    const i = this.#find(at);
    const piece = this.#pieces[i]!;
    const from = at - this.#starts[i]!;
    if (from + 4 <= piece.length) return piece.readUInt32BE(from);
    let n = 0;
    for (let k = 0; k < 4; k++) {
      const j = this.#find(at + k);
      n = n * 256 + this.#pieces[j]![at + k - this.#starts[j]!]!;
    }
    return n;
  }

  /** CRC-32 of bytes `start`..`end`, carried across the pieces. */
  crc(start: number, end: number): number {
    let crc = 0;
    for (let i = this.#find(start), at = start; at < end; i++) {
      const p = this.#pieces[i]!;
      const from = at - this.#starts[i]!;
      const to = Math.min(p.length, end - this.#starts[i]!);
      crc = crc32(p.subarray(from, to), crc);
      at = this.#starts[i]! + to;
      this.#at = i;
    }
    return crc;
  }
}

/** PNG chunk types, as the big-endian numbers their four ASCII bytes make. */
const IHDR = 0x49484452;
const IDAT = 0x49444154;
const IEND = 0x49454e44;
const PHYS = 0x70485973;

/** The name of the chunk type at `at` (for messages). */
const typeName = (b: Pieces, at: number) => b.slice(at + 4, at + 8).toString('latin1');

/** Walk a PNG; returns its size when the header is plain enough to decide without sharp. */
function walkPng(b: Pieces): Size | undefined {
  let at = 8;
  let first = true;
  let idat = false;
  // Chunk types between IHDR and the first IDAT (what libpng reads for the header).
  const beforeIdat: string[] = [];
  while (at + 12 <= b.length) {
    const length = b.u32(at);
    // The type as a number: its name is made only for a message or the short list below.
    const code = b.u32(at + 4);
    const end = at + 12 + length;
    if (length > 0x7fffffff || end > b.length)
      throw damaged(`PNG chunk ${typeName(b, at)} runs past the end`);
    if (first && (code !== IHDR || length !== 13)) throw damaged('PNG does not start with IHDR');
    first = false;
    if (b.crc(at + 4, at + 8 + length) !== b.u32(at + 8 + length))
      throw damaged(`PNG chunk ${typeName(b, at)} fails its CRC`);
    if (code === IDAT) idat = true;
    // (Never plain beyond two, or with a pHYs of another length: the list stops growing.)
    else if (!idat && at > 8 && beforeIdat.length < 2)
      beforeIdat.push(code === PHYS && length !== 9 ? 'pHYs of another length' : typeName(b, at));
    at = end;
    if (code === IEND) {
      if (!idat) throw damaged('PNG has no image data');
      if (at !== b.length) throw damaged('bytes after PNG IEND');
      return plainPngSize(b, beforeIdat);
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

/** The bytes in one piece (a single piece is itself). */
function joined(bytes: Buffer | readonly Buffer[]): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  return bytes.length === 1 ? bytes[0]! : Buffer.concat(bytes);
}

/**
 * Walk `bytes` (one buffer, or the pieces it arrived in) as an image of `type` (throws
 * `INVALID_PUSH` when it is damaged); returns its size when the walk alone decides the header
 * (a plain PNG), undefined when sharp must.
 */
export function walkImage(bytes: Buffer | readonly Buffer[], type: ImageType): Size | undefined {
  try {
    if (type === 'image/png') return walkPng(new Pieces(Buffer.isBuffer(bytes) ? [bytes] : bytes));
    if (type === 'image/jpeg') walkJpeg(joined(bytes));
    else walkWebp(joined(bytes));
    return undefined;
  } catch (err) {
    if (err instanceof ImagineError) throw err;
    throw damaged('its structure cannot be read');
  }
}

/**
 * Check that `bytes` (one buffer, or the pieces it arrived in) are a whole image of `type`;
 * returns its decoded size.
 */
export async function checkImage(
  bytes: Buffer | readonly Buffer[],
  type: ImageType,
): Promise<Size> {
  const plain = walkImage(bytes, type);
  if (plain) return plain;
  const sharp = await loadSharp();
  let meta: Metadata;
  try {
    meta = await sharp(joined(bytes)).metadata();
  } catch (err) {
    throw new ImagineError('INVALID_PUSH', 'image is damaged: its header cannot be decoded', {
      cause: err,
    });
  }
  if (!meta.width || !meta.height) throw damaged('it has no dimensions');
  return { width: meta.width, height: meta.height };
}
