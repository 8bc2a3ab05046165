/** Magic bytes are not an image: a PNG/JPEG/WebP header followed by garbage is refused. */
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkImage } from '../../relay/image-check.ts';
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
