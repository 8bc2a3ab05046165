/** Magic bytes are not an image: a PNG/JPEG/WebP header followed by garbage is refused. */
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkImage, walkImage } from '../../relay/image-check.ts';
import { noisePng } from '../helpers/images.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { sendPush, testJobId } from '../helpers/push.ts';

const solid = sharp({ create: { width: 24, height: 16, channels: 3, background: '#c84' } });
let png: Buffer;
let jpeg: Buffer;
let webp: Buffer;
beforeAll(async () => {
  png = await solid.clone().png().toBuffer();
  jpeg = await solid.clone().jpeg().toBuffer();
  webp = await solid.clone().webp().toBuffer();
});

describe('checkImage', () => {
  it('accepts whole images and reads their size', async () => {
    expect(await checkImage(png, 'image/png')).toEqual({ width: 24, height: 16 });
    expect(await checkImage(jpeg, 'image/jpeg')).toEqual({ width: 24, height: 16 });
    expect(await checkImage(webp, 'image/webp')).toEqual({ width: 24, height: 16 });
  });

  it.each<[string, () => [Buffer, 'image/png' | 'image/jpeg' | 'image/webp']]>([
    [
      'a PNG signature and garbage',
      () => [Buffer.concat([png.subarray(0, 8), randomBytes(500)]), 'image/png'],
    ],
    [
      'a PNG header and garbage',
      () => [Buffer.concat([png.subarray(0, 33), randomBytes(500)]), 'image/png'],
    ],
    ['a truncated PNG', () => [png.subarray(0, png.length - 20), 'image/png']],
    [
      'a PNG with a flipped byte',
      () => {
        const b = Buffer.from(png);
        b[b.length - 20] = b[b.length - 20]! ^ 0xff;
        return [b, 'image/png'];
      },
    ],
    ['a PNG with bytes after IEND', () => [Buffer.concat([png, Buffer.from('junk')]), 'image/png']],
    [
      'a JPEG SOI and garbage',
      () => [Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), randomBytes(500)]), 'image/jpeg'],
    ],
    ['a truncated JPEG', () => [jpeg.subarray(0, jpeg.length - 10), 'image/jpeg']],
    [
      'a RIFF/WEBP header and garbage',
      () => [Buffer.concat([webp.subarray(0, 16), randomBytes(500)]), 'image/webp'],
    ],
    ['a truncated WebP', () => [webp.subarray(0, webp.length - 4), 'image/webp']],
  ])('refuses %s with INVALID_PUSH', async (_name, make) => {
    const [bytes, type] = make();
    await expect(checkImage(bytes, type)).rejects.toMatchObject({ code: 'INVALID_PUSH' });
  });
});

/** A PNG chunk with its length and CRC. */
function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

interface Header {
  width?: number;
  height?: number;
  depth?: number;
  color?: number;
  compression?: number;
  filter?: number;
  interlace?: number;
  /** Chunks between IHDR and IDAT. */
  before?: Buffer[];
  signature?: Buffer;
}

/** A PNG built chunk by chunk (IDAT holds bytes no header read looks into). */
function craftPng(h: Header = {}): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(h.width ?? 24, 0);
  ihdr.writeUInt32BE(h.height ?? 16, 4);
  ihdr.set([h.depth ?? 8, h.color ?? 2, h.compression ?? 0, h.filter ?? 0, h.interlace ?? 0], 8);
  return Buffer.concat([
    h.signature ?? Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    ...(h.before ?? []),
    pngChunk('IDAT', randomBytes(40)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function pHYs(x: number, y: number, unit: number, length = 9): Buffer {
  const data = Buffer.alloc(length);
  if (length >= 9) {
    data.writeUInt32BE(x, 0);
    data.writeUInt32BE(y, 4);
    data[8] = unit;
  }
  return pngChunk('pHYs', data);
}

/** What sharp alone decides (the check before the walk decided plain PNGs by itself). */
async function sharpSays(bytes: Buffer): Promise<{ width: number; height: number } | 'refused'> {
  try {
    const meta = await sharp(bytes).metadata();
    return meta.width && meta.height ? { width: meta.width, height: meta.height } : 'refused';
  } catch {
    return 'refused';
  }
}

async function checkSays(
  bytes: Buffer | Buffer[],
): Promise<{ width: number; height: number } | 'refused'> {
  try {
    return await checkImage(bytes, 'image/png');
  } catch (err) {
    expect(err).toMatchObject({ code: 'INVALID_PUSH' });
    return 'refused';
  }
}

describe('PNG headers decided without sharp', () => {
  const cases: [string, Header][] = [];
  for (const color of [0, 1, 2, 3, 4, 5, 6, 7])
    for (const depth of [0, 1, 2, 3, 4, 8, 12, 16, 32])
      cases.push([`colour type ${color}, depth ${depth}`, { color, depth }]);
  for (const interlace of [1, 2, 255]) cases.push([`interlace ${interlace}`, { interlace }]);
  for (const compression of [1, 8]) cases.push([`compression ${compression}`, { compression }]);
  for (const filter of [1, 64]) cases.push([`filter ${filter}`, { filter }]);
  const sizes: [number, number][] = [
    [0, 16],
    [16, 0],
    [1, 1],
    [16384, 1],
    [16385, 1],
    [16383, 16383],
    [16384, 16383],
    [16384, 16384],
    [1_000_000, 1],
    [2 ** 31 - 1, 1],
    [2 ** 31, 1],
    [2 ** 32 - 1, 2 ** 32 - 1],
  ];
  for (const [width, height] of sizes) cases.push([`${width}×${height}`, { width, height }]);
  cases.push(
    ['a pHYs', { before: [pHYs(2835, 2835, 1)] }],
    ['a pHYs with odd values', { before: [pHYs(0xffffffff, 0, 7)] }],
    ['two pHYs', { before: [pHYs(1, 1, 1), pHYs(1, 1, 1)] }],
    ['a pHYs of 8 bytes', { before: [pHYs(0, 0, 0, 8)] }],
    ['a pHYs of 10 bytes', { before: [pHYs(1, 1, 1, 10)] }],
    ['a gAMA', { before: [pngChunk('gAMA', Buffer.from([0, 0, 0xb1, 0x8f]))] }],
    ['a zero gAMA', { before: [pngChunk('gAMA', Buffer.alloc(4))] }],
    ['an unknown critical chunk', { before: [pngChunk('ABCD', Buffer.alloc(8))] }],
    ['a chunk with the reserved bit', { before: [pngChunk('abcd', Buffer.alloc(8))] }],
    ['an unknown ancillary chunk', { before: [pngChunk('abCd', Buffer.alloc(8))] }],
    ['a PLTE in a truecolour image', { before: [pngChunk('PLTE', Buffer.alloc(6))] }],
    ['a palette image with its PLTE', { color: 3, before: [pngChunk('PLTE', Buffer.alloc(6))] }],
    ['a tEXt', { before: [pngChunk('tEXt', Buffer.from('parameters\0a fox'))] }],
    ['a tEXt without a keyword', { before: [pngChunk('tEXt', Buffer.from('\0a fox'))] }],
    ['a second IHDR', { before: [pngChunk('IHDR', Buffer.alloc(13))] }],
    ['a damaged signature', { signature: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]) }],
    [
      'a signature with CR and LF swapped',
      {
        signature: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0a, 0x0d, 0x1a, 0x0a]),
      },
    ],
  );

  it.each(cases)('%s: the same answer as sharp', async (_name, header) => {
    const bytes = craftPng(header);
    expect(await checkSays(bytes)).toEqual(await sharpSays(bytes));
  });

  it('decides the PNGs sharp writes by the walk alone, and the others by sharp', async () => {
    const plain = [
      png,
      await solid.clone().ensureAlpha().png().toBuffer(),
      await solid.clone().greyscale().png().toBuffer(),
      await solid.clone().png({ progressive: true }).toBuffer(),
      await solid.clone().png({ compressionLevel: 1 }).toBuffer(),
    ];
    for (const b of plain) {
      expect(walkImage(b, 'image/png')).toEqual({ width: 24, height: 16 });
      expect(await checkImage(b, 'image/png')).toEqual(await sharpSays(b));
    }
    const others = [
      await solid.clone().png({ palette: true }).toBuffer(),
      await solid.clone().withMetadata({ density: 300 }).png().toBuffer(),
    ];
    for (const b of others) {
      expect(walkImage(b, 'image/png')).toBeUndefined();
      expect(await checkImage(b, 'image/png')).toEqual({ width: 24, height: 16 });
    }
    expect(walkImage(jpeg, 'image/jpeg')).toBeUndefined();
    expect(walkImage(webp, 'image/webp')).toBeUndefined();
  });
});

/** `bytes` cut into pieces at the given offsets (some of them empty, some one byte). */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    out.push(bytes.subarray(from, Math.max(from, to)));
    from = Math.max(from, to);
  }
  return out;
}

describe('a PNG checked in the pieces it arrived in', () => {
  it('gets the same answer as the joined PNG, wherever the cuts fall', async () => {
    const big = await noisePng(64, 48);
    const damagedCrc = Buffer.from(big);
    damagedCrc[big.length - 30] = damagedCrc[big.length - 30]! ^ 1;
    const candidates = [
      big,
      png,
      damagedCrc,
      big.subarray(0, big.length - 5),
      Buffer.concat([big, Buffer.from('junk')]),
      craftPng({ color: 3 }),
      craftPng({ before: [pHYs(1, 1, 1)] }),
      craftPng({ signature: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]) }),
    ];
    for (const bytes of candidates) {
      const whole = await checkSays(bytes);
      // Every cut through the signature, IHDR and the first chunk headers, one byte at a time.
      for (let i = 0; i <= 60; i++) expect(await checkSays(cut(bytes, [i, i + 1]))).toEqual(whole);
      // Many pieces: 1-byte ones, empty ones, and cuts through CRCs and lengths further on.
      const cuts = [
        3,
        3,
        4,
        12,
        33,
        34,
        37,
        41,
        100,
        101,
        101,
        1000,
        4096,
        8199,
        8203,
        bytes.length - 3,
      ];
      expect(await checkSays(cut(bytes, cuts))).toEqual(whole);
      for (let step = 7; step < 9000; step *= 3) {
        const even = Array.from(
          { length: Math.floor(bytes.length / step) },
          (_, k) => (k + 1) * step,
        );
        expect(await checkSays(cut(bytes, even))).toEqual(whole);
      }
    }
  });
});

describe('POST /push with a damaged image', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    app = await startTestImagine({}, { role: 'relay' });
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('answers 400 INVALID_PUSH and delivers nothing', async () => {
    const jobId = testJobId();
    const garbage = Buffer.concat([png.subarray(0, 33), randomBytes(2000)]);
    const res = await sendPush(
      app.url,
      { jobId, status: 'done', contentType: 'image/png' },
      garbage,
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INVALID_PUSH');
    expect((await fetch(`${app.url}/jobs/${jobId}`)).status).toBe(404);
  });
});
