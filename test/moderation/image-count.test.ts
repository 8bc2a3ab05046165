/**
 * Every window limit counts images: a job of 4 takes 4, an upscale 1, a vary its count; what
 * a failed enqueue gives back is what it took. Through the one submit path, on both backends.
 */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import type { ModerationPolicy } from '../../moderation/policy.ts';
import { createSubmitter, type JobRegistry } from '../../submit/submit.ts';
import { BACKENDS, type Backend, ctx, refusal } from './helpers.ts';

const alice = { platform: 'discord', userId: 'alice', scopeId: 'g1', channelId: 'c1' } as const;
const CDN = 'https://cdn.discordapp.com/attachments/1/2/imagine-7.png';

/** A submitter with no count default of its own (the real one's), whose queue can be broken. */
function submitterFor(policy: ModerationPolicy) {
  const sent: Job[] = [];
  const queue = { broken: false };
  const registry: JobRegistry = {
    registerQueued: () => ({ position: 0 }),
    queuedCount: 0,
    forget: () => {},
  };
  const submit = createSubmitter({
    queue: {
      send: async (job) => {
        if (queue.broken) throw new Error('queue down');
        sent.push(job);
      },
    },
    registry,
    secret: 'x'.repeat(32),
    defaultSteps: 4,
    jobTtlSeconds: 900,
    admission: policy,
    inputPolicy: { hosts: ['cdn.discordapp.com'], allowHttp: false, secret: 'x'.repeat(32) },
    logger: pino({ level: 'silent' }),
  });
  return { submit, sent, queue };
}

const upscaleOf = (side: number) => ({
  prompt: 'a fox',
  task: 'upscale',
  input: { image: { kind: 'url', url: CDN }, index: 0, seed: 7, width: side, height: side },
});

describe.each(BACKENDS)('limits count images on %s', (_name, makeBackend) => {
  let backend: Backend;
  beforeEach(() => {
    backend = makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });
  const used = async (p: ModerationPolicy) => (await p.quota(ctx({ ...alice }).origin)).user.used;

  it('with nothing set a request makes 4 images and takes 4 from the user and the server', async () => {
    const p = await backend.make();
    const { submit } = submitterFor(p);
    const { job } = await submit({ request: { prompt: 'a fox' }, origin: alice });
    expect(job.count).toBe(4);
    const q = await p.quota(alice);
    expect(q.user.used).toBe(4);
    expect(q.scope.used).toBe(4);
  });

  it('with 6 images left, a second job of 4 is refused, saying 2 are left; 2 still fit', async () => {
    const p = await backend.make({ imagesPerUser: 6 });
    const { submit, sent } = submitterFor(p);
    await submit({ request: { prompt: 'a fox', count: 4 }, origin: alice });
    const second = submit({ request: { prompt: 'a fox', count: 4 }, origin: alice });
    await expect(second).rejects.toMatchObject({
      code: 'RATE_LIMITED',
      message: expect.stringMatching(/asks for 4 images and you have 2 of your 6 .*left/),
    });
    expect((await refusal(second)).retryAfterSeconds).toBeGreaterThan(0);
    expect(await used(p)).toBe(4);
    await submit({ request: { prompt: 'a fox', count: 2 }, origin: alice });
    expect(await used(p)).toBe(6);
    expect(sent.map((j) => j.count)).toEqual([4, 2]);
    // Nothing left at all: the plain message.
    await expect(
      submit({ request: { prompt: 'a fox', count: 1 }, origin: alice }),
    ).rejects.toMatchObject({ message: expect.stringMatching(/used your 6 images/) });
  });

  it('the server window counts images too, and says how many the server has left', async () => {
    const p = await backend.make({ imagesPerScope: 5 });
    const { submit } = submitterFor(p);
    await submit({ request: { prompt: 'a fox', count: 4 }, origin: alice });
    await expect(
      submit({ request: { prompt: 'a fox', count: 2 }, origin: { ...alice, userId: 'bob' } }),
    ).rejects.toMatchObject({
      code: 'RATE_LIMITED',
      message: expect.stringMatching(/this server has 1 of its 5 .*left/),
    });
    // Bob's own window got its 2 back when the server refused.
    expect((await p.quota({ ...alice, userId: 'bob' })).user.used).toBe(0);
  });

  it('an upscale counts 1 image, a vary its count', async () => {
    const p = await backend.make({ imagesPerUser: 8 });
    const { submit, sent } = submitterFor(p);
    await submit({ request: { prompt: 'a fox', count: 4 }, origin: alice });
    await submit({ request: upscaleOf(1024), origin: alice });
    expect(await used(p)).toBe(5);
    await submit({
      request: { prompt: 'a fox', input: { image: { kind: 'url', url: CDN } }, count: 3 },
      origin: alice,
    });
    expect(await used(p)).toBe(8);
    expect(sent.map((j) => [j.task, j.count])).toEqual([
      ['generate', 4],
      ['upscale', 1],
      ['vary', 3],
    ]);
  });

  it("an upscale's size limit is measured on its input (the Upscale offered on a 2048 image is admitted)", async () => {
    const p = await backend.make({ maxImageSide: 2048 });
    const { submit } = submitterFor(p);
    const { job } = await submit({ request: upscaleOf(2048), origin: alice });
    expect(job.params).toMatchObject({ width: 4096, height: 4096 });
    const strict = await backend.make({ maxImageSide: 1024 });
    const { submit: strictSubmit } = submitterFor(strict);
    await expect(strictSubmit({ request: upscaleOf(1536), origin: alice })).rejects.toMatchObject({
      code: 'INVALID_PARAMETERS',
      message: expect.stringMatching(
        /upscaled from at most 1024 pixels on a side \(this one is 1536×1536\)/,
      ),
    });
  });

  it('a job of 4 cancelled before it started gives back its 4 images', async () => {
    const p = await backend.make({ imagesPerUser: 6 });
    const admitted = await p.admit(ctx({ ...alice, count: 4 }));
    admitted.confirm('job-of-4');
    expect(await used(p)).toBe(4);
    p.cancelledBeforeStart('job-of-4');
    await expect.poll(() => used(p)).toBe(0);
    expect((await p.quota(alice)).scope.used).toBe(0);
  });

  it('a job the queue refused gives back every image it took, and only those', async () => {
    const p = await backend.make({ imagesPerUser: 6 });
    const { submit, queue } = submitterFor(p);
    await submit({ request: { prompt: 'a fox', count: 2 }, origin: alice });
    queue.broken = true;
    await expect(submit({ request: { prompt: 'a fox', count: 4 }, origin: alice })).rejects.toThrow(
      /queue down/,
    );
    const q = await p.quota(alice);
    expect(q.user.used).toBe(2);
    expect(q.scope.used).toBe(2);
    queue.broken = false;
    await submit({ request: { prompt: 'a fox', count: 4 }, origin: alice });
    expect(await used(p)).toBe(6);
  });
});
