import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestImagine } from './helpers/imagine.ts';
import { followJob } from './helpers/ws.ts';

describe('web flow end to end (fauxqs + demo generator + real sockets)', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    app = await startTestImagine();
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('the seed README flow: POST /enqueue, then the images (4 by default) arrive on /ws', async () => {
    const res = await fetch(`${app.url}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'A fox in space', aspect: '16:9', seed: 42 }),
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { jobId: string; ws: string; demo: boolean };
    expect(body.jobId).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(body.demo).toBe(true);
    const got = await followJob(body.ws);
    const states = got.texts.filter((t) => t.type === 'status').map((t) => t.state);
    expect(states.at(-1)).toBe('done');
    // A request naming no count makes 4 images: an image frame and a binary frame each, the
    // first exactly what a single-image client of the seed reads.
    const imageFrames = got.texts.filter((t) => t.type === 'image');
    expect(imageFrames.map((f) => f.seed)).toEqual([42, 43, 44, 45]);
    expect(imageFrames[0]).toMatchObject({ jobId: body.jobId, contentType: 'image/png', seed: 42 });
    expect(got.binaries).toHaveLength(4);
    for (const [i, frame] of imageFrames.entries()) {
      expect(frame.bytes).toBe(got.binaries[i]!.length);
      const meta = await sharp(got.binaries[i]!).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 1344, 768]);
    }
  });
});
