/**
 * Cancel (issue 11): `DELETE /jobs/:jobId` and the FrontDoor's `cancel` for chat buttons. The
 * job ends in `cancelled`, told once; a finished job is left alone (409); bad ids are 4xx.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueJob } from '../helpers/enqueue.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { sendPush, testJobId } from '../helpers/push.ts';
import { openWaiter } from '../helpers/ws.ts';

describe('DELETE /jobs/:jobId', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    // No worker: jobs stay queued until the test says otherwise.
    app = await startTestImagine({}, { role: 'relay' });
  });
  afterAll(async () => {
    await app?.stop();
  });

  const del = (jobId: string) =>
    fetch(`${app.url}/jobs/${encodeURIComponent(jobId)}`, { method: 'DELETE' });

  it('cancels a queued job: 200, its waiters get one cancelled status and a 1000 close', async () => {
    const job = await enqueueJob(app.url, 'a fox in space');
    const waiter = await openWaiter(job.ws);
    const res = await del(job.jobId);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ jobId: job.jobId, state: 'cancelled' });
    const seen = await waiter.closed;
    expect(seen.closeCode).toBe(1000);
    expect(seen.closeReason).toBe('cancelled');
    const states = seen.texts.map((t) => t.state);
    expect(states).toEqual(['queued', 'cancelled']);
    const polled = (await (await fetch(`${app.url}/jobs/${job.jobId}`)).json()) as {
      state: string;
    };
    expect(polled.state).toBe('cancelled');
    // Its image is not "not ready, try again": there will be none.
    const image = await fetch(`${app.url}/jobs/${job.jobId}/image`);
    expect(image.status).toBe(409);
    expect(await image.json()).toMatchObject({ error: { code: 'JOB_CANCELLED' } });
    // Nor can a link to it be signed: the same answer, not NOT_READY.
    const link = await fetch(`${app.url}/jobs/${job.jobId}/image-link?i=0`, { method: 'POST' });
    expect(link.status).toBe(409);
    expect(await link.json()).toMatchObject({ error: { code: 'JOB_CANCELLED' } });
    // A waiter arriving later is told at once, and closed.
    const late = await openWaiter(job.ws);
    const lateSeen = await late.closed;
    expect(lateSeen.texts.map((t) => t.state)).toEqual(['cancelled']);
    expect(lateSeen.closeReason).toBe('cancelled');
  });

  it('a second cancel is a no-op answered 409 ALREADY_FINISHED with the state', async () => {
    const job = await enqueueJob(app.url, 'a fox in space');
    expect((await del(job.jobId)).status).toBe(200);
    const again = await del(job.jobId);
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({
      error: { code: 'ALREADY_FINISHED' },
      state: 'cancelled',
    });
  });

  it('a cancel after the image is a no-op: 409, the image is still there', async () => {
    const job = await enqueueJob(app.url, 'a fox in space');
    const image = await pngOf(64, 64);
    const pushed = await sendPush(
      app.url,
      {
        jobId: job.jobId,
        status: 'done',
        contentType: 'image/png',
        seed: 1,
        width: 64,
        height: 64,
      },
      image,
    );
    expect(pushed.status).toBe(200);
    const res = await del(job.jobId);
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: 'ALREADY_FINISHED' }, state: 'done' });
    const got = await fetch(`${app.url}/jobs/${job.jobId}/image`);
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer()).equals(image)).toBe(true);
  });

  it('an unknown job is 404 JOB_NOT_FOUND', async () => {
    const res = await del(testJobId());
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'JOB_NOT_FOUND' } });
  });

  it.each([
    ['too short', 'abc'],
    ['bad characters', `${'a'.repeat(23)}$`],
    ['a path traversal', '..%2F..%2Fetc%2Fpasswd'],
    ['a very long id', 'a'.repeat(5000)],
    ['unicode', 'ü'.repeat(24)],
    ['a NUL', `${'a'.repeat(23)}\u0000`],
  ])('a malformed id (%s) is a 4xx, never a 500', async (_name, id) => {
    const res = await fetch(`${app.url}/jobs/${id.includes('%') ? id : encodeURIComponent(id)}`, {
      method: 'DELETE',
    });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    const body = (await res.json()) as { error: { code: string } };
    expect(['INVALID_JOB_ID', 'NOT_FOUND', 'BAD_REQUEST']).toContain(body.error.code);
  });

  it('an over-long id on GET is the same coded 400 (the router refused it in its own shape)', async () => {
    const res = await fetch(`${app.url}/jobs/${'a'.repeat(5000)}`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'BAD_REQUEST' } });
  });

  it('a DELETE with a body is still answered by the job id alone', async () => {
    const job = await enqueueJob(app.url, 'a fox in space');
    const res = await fetch(`${app.url}/jobs/${job.jobId}`, {
      method: 'DELETE',
      headers: { 'content-type': 'application/json' },
      body: '{"not": "json"',
    });
    expect(res.status).toBeLessThan(500);
  });
});

describe('FrontDoor.cancel (chat Cancel buttons)', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    app = await startTestImagine({}, { role: 'relay' });
  });
  afterAll(async () => {
    await app?.stop();
  });

  async function discordJob(userId: string) {
    const { job } = await app.relay!.frontDoor.submit({
      request: { prompt: 'a fox in space', width: 64, height: 64 },
      origin: { platform: 'discord', userId, scopeId: 'guild-1', channelId: 'chan-1' },
    });
    return job.jobId;
  }

  it('the requester may cancel; another user may not; a moderator may', async () => {
    const door = app.relay!.frontDoor;
    const mine = await discordJob('user-1');
    expect(
      await door.cancel(mine, { platform: 'discord', userId: 'user-2', isModerator: false }),
    ).toEqual({ outcome: 'not-allowed', jobId: mine });
    expect(app.relay!.relay.tracker.get(mine)?.state).toBe('queued');
    // The same id on another platform is another person.
    expect(
      await door.cancel(mine, { platform: 'slack', userId: 'user-1', isModerator: false }),
    ).toEqual({ outcome: 'not-allowed', jobId: mine });
    expect(
      await door.cancel(mine, { platform: 'discord', userId: 'user-1', isModerator: false }),
    ).toEqual({ outcome: 'cancelled', jobId: mine });
    expect(app.relay!.relay.tracker.get(mine)?.state).toBe('cancelled');
    expect(
      await door.cancel(mine, { platform: 'discord', userId: 'user-1', isModerator: false }),
    ).toEqual({ outcome: 'already-finished', jobId: mine, state: 'cancelled' });

    const theirs = await discordJob('user-3');
    expect(
      await door.cancel(theirs, { platform: 'discord', userId: 'mod-9', isModerator: true }),
    ).toEqual({ outcome: 'cancelled', jobId: theirs });
  });

  it('an unknown or malformed id is unknown', async () => {
    const door = app.relay!.frontDoor;
    const who = { platform: 'discord' as const, userId: 'u', isModerator: true };
    expect((await door.cancel(testJobId(), who)).outcome).toBe('unknown');
    expect((await door.cancel('../../x', who)).outcome).toBe('unknown');
  });
});

describe('chat deliverers say a cancelled job plainly', () => {
  it('Discord: the final line says Cancelled, not an error', async () => {
    const { failureLine } = await import('../../bot/discord/messages.ts');
    const line = failureLine({ jobId: testJobId(), state: 'cancelled', createdAt: Date.now() });
    expect(line).toContain('Cancelled');
    expect(line).not.toContain('could not be made');
  });
  it('Slack: the advice for a cancelled job says Cancelled', async () => {
    const { adviceFor } = await import('../../bot/slack/replies.ts');
    expect(adviceFor({ code: 'JOB_CANCELLED', message: 'the job was cancelled' })).toMatch(
      /^Cancelled/,
    );
  });
});
