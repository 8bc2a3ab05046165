/**
 * A job no configured backend would take is refused at submit, with a message that says why,
 * before anything is queued or counted: with `GENERATORS` whose backends make at most 512 a side
 * and 2 images, a 1024² or a 4-image request used to be queued and then failed by the worker's
 * router ("no configured backend can do…").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

describe('GENERATORS limits: a job no backend takes is refused before queueing', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;

  beforeAll(async () => {
    app = await startTestImagine({
      GENERATORS: JSON.stringify([
        { name: 'small', type: 'demo', maxSide: 512, maxCount: 2, tasks: ['generate'] },
      ]),
      LIMIT_IMAGES_PER_USER: '6',
    });
  });
  afterAll(async () => {
    await app?.stop();
  });

  const enqueue = (body: Record<string, unknown>) =>
    fetch(`${app.url}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a lighthouse at dusk', ...body }),
    });

  const refusal = async (res: Response) => {
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('INVALID_PARAMETERS');
    return body.error.message;
  };

  it('too big, or too many: 400 INVALID_PARAMETERS saying why, no job, no quota spent', async () => {
    expect(await refusal(await enqueue({ width: 1024, height: 1024, count: 1 }))).toBe(
      "this server's image generators make at most 512 pixels a side; a 1024×1024 generate is too big",
    );
    expect(await refusal(await enqueue({ width: 512, height: 512, count: 4 }))).toBe(
      "this server's image generators make at most 2 images at once; ask for fewer",
    );
    expect(app.relay!.relay.tracker.queuedCount).toBe(0);
    // None of the 6 images an hour was spent on the refusals: three jobs of 2 still go through.
    for (let i = 0; i < 3; i++) {
      const res = await enqueue({ width: 512, height: 512, count: 2 });
      expect(res.status).toBe(202);
      const job = (await res.json()) as { ws: string };
      const got = await followJob(job.ws);
      expect(got.binaries).toHaveLength(2);
    }
  });
});
