import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ModerationPolicy, rateUserOf } from '../../moderation/policy.ts';
import { createSubmitter, type JobRegistry } from '../../submit/submit.ts';
import { BACKENDS, type Backend, ctx, refusal } from './helpers.ts';

describe.each(BACKENDS)('admission on %s', (_name, makeBackend) => {
  let backend: Backend;
  beforeEach(() => {
    backend = makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });
  const policy = (...args: Parameters<Backend['make']>): Promise<ModerationPolicy> =>
    backend.make(...args);

  it('admits exactly the per-user limit out of 50 parallel requests', async () => {
    const p = await policy({ imagesPerUser: 7 });
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => p.admit(ctx({ userId: 'flooder' }))),
    );
    const admitted = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    expect(admitted).toHaveLength(7);
    for (const r of refused) expect((r.reason as { code: string }).code).toBe('RATE_LIMITED');
    // Refusals counted nothing: the user has used exactly the limit.
    const q = await p.quota(ctx({ userId: 'flooder' }).origin);
    expect(q.user).toMatchObject({ limit: 7, used: 7, remaining: 0 });
    expect(q.user.resetsInSeconds).toBeGreaterThan(0);
  });

  it('admits exactly the per-scope limit across 50 users in parallel', async () => {
    const p = await policy({ imagesPerScope: 12 });
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => p.admit(ctx({ userId: `user-${i}` }))),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(12);
    // Users refused by the scope limit got their own count back.
    const refusedUsers = results.flatMap((r, i) => (r.status === 'rejected' ? [`user-${i}`] : []));
    const q = await p.quota(ctx({ userId: refusedUsers[0]! }).origin);
    expect(q.user.used).toBe(0);
    expect(q.scope).toMatchObject({ limit: 12, used: 12, remaining: 0 });
  });

  it('never lets one user hold more than the concurrency limit, and frees a slot when a job ends', async () => {
    const p = await policy({ concurrentPerUser: 3 });
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => p.admit(ctx({ userId: 'busy' }))),
    );
    const admitted = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(admitted).toHaveLength(3);
    admitted.forEach((a, i) => {
      a.confirm(`job-${i}`);
    });
    const refused = await refusal(p.admit(ctx({ userId: 'busy' })));
    expect(refused.code).toBe('RATE_LIMITED');
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    expect((await p.quota(ctx({ userId: 'busy' }).origin)).concurrent).toEqual({
      limit: 3,
      inProgress: 3,
    });
    p.finished('job-1');
    await expect
      .poll(async () => (await p.quota(ctx({ userId: 'busy' }).origin)).concurrent.inProgress)
      .toBe(2);
    await expect(p.admit(ctx({ userId: 'busy' }))).resolves.toBeDefined();
  });

  it('a job that ends before its admission is confirmed still frees its slot', async () => {
    const p = await policy({ concurrentPerUser: 1 });
    const a = await p.admit(ctx({ userId: 'fast' }));
    p.finished('quick-job');
    a.confirm('quick-job');
    await expect
      .poll(async () => (await p.quota(ctx({ userId: 'fast' }).origin)).concurrent.inProgress)
      .toBe(0);
  });

  it('cancel gives back the quota and the slot; a second cancel gives nothing more', async () => {
    const p = await policy({ imagesPerUser: 2, concurrentPerUser: 1 });
    const a = await p.admit(ctx({ userId: 'c' }));
    await a.cancel();
    await a.cancel();
    const q = await p.quota(ctx({ userId: 'c' }).origin);
    expect(q.user.used).toBe(0);
    expect(q.scope.used).toBe(0);
    expect(q.concurrent.inProgress).toBe(0);
    (await p.admit(ctx({ userId: 'c' }))).confirm('j1');
    p.finished('j1');
    (await p.admit(ctx({ userId: 'c' }))).confirm('j2');
    p.finished('j2');
    expect((await refusal(p.admit(ctx({ userId: 'c' })))).code).toBe('RATE_LIMITED');
  });

  it('refuses at once when the queue is full, with a time to come back', async () => {
    const p = await policy({ maxQueueLength: 5 });
    const r = await refusal(p.admit(ctx({ queueLength: 5 })));
    expect(r.code).toBe('QUEUE_FULL');
    expect(r.retryAfterSeconds).toBeGreaterThanOrEqual(5);
    await expect(p.admit(ctx({ queueLength: 4 }))).resolves.toBeDefined();
    // Nothing was counted for the refusal.
    expect((await p.quota(ctx().origin)).user.used).toBe(1);
  });

  it('never queues past the maximum queue length under 50 parallel submissions', async () => {
    const p = await policy({ maxQueueLength: 5 });
    const queued = new Set<string>();
    const registry: JobRegistry = {
      registerQueued: (job) => {
        queued.add(job.jobId);
        return { position: queued.size - 1 };
      },
      get queuedCount() {
        return queued.size;
      },
      forget: (id) => {
        queued.delete(id);
      },
    };
    const submit = createSubmitter({
      queue: { send: async () => {} },
      registry,
      secret: 'x'.repeat(32),
      defaultSteps: 4,
      jobTtlSeconds: 900,
      admission: p,
      logger: pino({ level: 'silent' }),
    });
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        submit({
          request: { prompt: 'a fox in space' },
          origin: { platform: 'discord', userId: `user-${i}`, scopeId: 'g1', channelId: 'c1' },
        }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    expect(queued.size).toBe(5);
    for (const r of results)
      if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('QUEUE_FULL');
    // The refused got their counts back: the scope counted only the five queued jobs, each of
    // the default 4 images.
    expect((await p.quota(ctx({ userId: 'user-0' }).origin)).scope.used).toBe(20);
  });

  it('counts web clients by address, IPv6 ones by their /64 network', async () => {
    const p = await policy({ imagesPerUser: 2 });
    const web = (userId: string) => ctx({ platform: 'web', scopeId: 'web', userId });
    await p.admit(web('2001:db8:1:2::1'));
    await p.admit(web('2001:db8:1:2:aaaa:bbbb:cccc:dddd'));
    expect((await refusal(p.admit(web('2001:0db8:0001:0002::ffff')))).code).toBe('RATE_LIMITED');
    await expect(p.admit(web('2001:db8:1:3::1'))).resolves.toBeDefined();
    await p.admit(web('192.0.2.7'));
    await p.admit(web('192.0.2.7'));
    expect((await refusal(p.admit(web('::ffff:192.0.2.7')))).code).toBe('RATE_LIMITED');
  });

  it('refuses blocked words (built-in and configured), and no longer once built-ins are off', async () => {
    const p = await policy();
    expect((await refusal(p.admit(ctx({ prompt: 'a NÚDE figure' })))).code).toBe('BLOCKED_CONTENT');
    await p.change(
      'discord:g1',
      { kind: 'limits', changes: { builtinBlockedWords: false } },
      { at: 1, actorId: 'mod', action: 'test' },
    );
    await expect(p.admit(ctx({ prompt: 'a NÚDE figure' }))).resolves.toBeDefined();
    await p.change(
      'discord:g1',
      { kind: 'words-add', words: ['kraken'] },
      { at: 2, actorId: 'mod', action: 'test' },
    );
    expect((await refusal(p.admit(ctx({ prompt: 'the K.R.A.K.E.N rises' })))).code).toBe(
      'BLOCKED_CONTENT',
    );
    // Another server is not affected by this one's words.
    await expect(
      p.admit(ctx({ scopeId: 'g2', prompt: 'the kraken rises' })),
    ).resolves.toBeDefined();
    expect((await p.quota(ctx().origin)).user.used).toBe(1);
  });

  it('refuses images larger than the maximum side', async () => {
    const p = await policy({ maxImageSide: 1024 });
    expect((await refusal(p.admit(ctx({ params: { width: 1344, height: 768 } })))).code).toBe(
      'INVALID_PARAMETERS',
    );
    await expect(p.admit(ctx({ params: { width: 1024, height: 1024 } }))).resolves.toBeDefined();
  });

  it('applies allowed and denied channels', async () => {
    const p = await policy();
    const audit = { at: 1, actorId: 'mod', action: 'test' };
    await p.change('discord:g1', { kind: 'channel-allow', channelId: 'art' }, audit);
    expect((await refusal(p.admit(ctx({ channelId: 'general' })))).code).toBe(
      'CHANNEL_NOT_ALLOWED',
    );
    await expect(p.admit(ctx({ channelId: 'art' }))).resolves.toBeDefined();
    await p.change('discord:g1', { kind: 'channels-clear' }, audit);
    await expect(p.admit(ctx({ channelId: 'general' }))).resolves.toBeDefined();
    await p.change('discord:g1', { kind: 'channel-deny', channelId: 'general' }, audit);
    expect((await refusal(p.admit(ctx({ channelId: 'general' })))).code).toBe(
      'CHANNEL_NOT_ALLOWED',
    );
    await expect(p.admit(ctx({ channelId: 'art' }))).resolves.toBeDefined();
  });

  it('per-channel overrides tighten a limit in that channel only', async () => {
    const p = await policy({ imagesPerUser: 10 });
    await p.change(
      'discord:g1',
      { kind: 'limits', channelId: 'strict', changes: { imagesPerUser: 1 } },
      { at: 1, actorId: 'mod', action: 'test' },
    );
    await p.admit(ctx({ channelId: 'strict' }));
    const r = await refusal(p.admit(ctx({ channelId: 'strict' })));
    expect(r.code).toBe('RATE_LIMITED');
    expect(r.retryAfterSeconds).toBeGreaterThan(0);
    expect(r.retryAfterSeconds).toBeLessThanOrEqual(3600);
    await expect(p.admit(ctx({ channelId: 'relaxed' }))).resolves.toBeDefined();
    const q = await p.quota(ctx({ channelId: 'relaxed' }).origin);
    expect(q.user).toMatchObject({ limit: 10, used: 2, remaining: 8 });
    const strict = await p.quota(ctx({ channelId: 'strict' }).origin);
    expect(strict.user).toMatchObject({ limit: 1, used: 2, remaining: 0 });
  });

  it('a limit of zero pauses requests without a time', async () => {
    const p = await policy({ imagesPerUser: 0 });
    const r = await refusal(p.admit(ctx()));
    expect(r.code).toBe('RATE_LIMITED');
    expect(r.retryAfterSeconds).toBeUndefined();
  });
});

describe('channel lists and direct messages', () => {
  it('a Slack DM is not judged by the workspace channel lists; its limits still apply', async () => {
    const backend = BACKENDS[1]![1]();
    try {
      const p = await backend.make({ imagesPerUser: 1 });
      const audit = { at: 1, actorId: 'mod', action: 'test' };
      await p.change('slack:T1', { kind: 'channel-allow', channelId: 'C0ART' }, audit);
      const slack = { platform: 'slack' as const, scopeId: 'T1', userId: 'U1' };
      expect((await refusal(p.admit(ctx({ ...slack, channelId: 'C0GENERAL' })))).code).toBe(
        'CHANNEL_NOT_ALLOWED',
      );
      await expect(p.admit(ctx({ ...slack, channelId: 'D0DM' }))).resolves.toBeDefined();
      expect((await refusal(p.admit(ctx({ ...slack, channelId: 'D0DM' })))).code).toBe(
        'RATE_LIMITED',
      );
    } finally {
      await backend.cleanup();
    }
  });
});

describe('concurrency slots shared through Redis', () => {
  let backend: Backend;
  beforeEach(() => {
    backend = BACKENDS[0]![1]();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('a job that ends on another relay instance (or after a restart) frees its slot', async () => {
    const before = await backend.make({ concurrentPerUser: 2 });
    const a = await before.admit(ctx({ userId: 'moved' }));
    a.confirm('job-a');
    const b = await before.admit(ctx({ userId: 'moved' }));
    // The first instance is gone (restart) or simply not the one the worker pushed to.
    const after = await backend.make({ concurrentPerUser: 2 });
    expect((await refusal(after.admit(ctx({ userId: 'moved' })))).code).toBe('RATE_LIMITED');
    after.finished('job-a');
    await expect
      .poll(async () => (await after.quota(ctx({ userId: 'moved' }).origin)).concurrent.inProgress)
      .toBe(1);
    // Ended elsewhere before its admission was even confirmed here.
    after.finished('job-b');
    b.confirm('job-b');
    await expect
      .poll(async () => (await after.quota(ctx({ userId: 'moved' }).origin)).concurrent.inProgress)
      .toBe(0);
  });
});

describe('admission counted in one step on Redis, shared by relays', () => {
  let backend: Backend;
  beforeEach(() => {
    backend = BACKENDS[0]![1]();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('two relays admitting at once between them never over-admit a slot or a window', async () => {
    const a = await backend.make({ concurrentPerUser: 5, imagesPerUser: 1000 });
    const b = await backend.make({ concurrentPerUser: 5, imagesPerUser: 1000 });
    const one = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) =>
        (i % 2 ? a : b).admit(ctx({ userId: 'both', count: 2 })),
      ),
    );
    expect(one.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    // A refusal counted nothing: 5 jobs of 2 images.
    expect((await a.quota(ctx({ userId: 'both' }).origin)).user.used).toBe(10);
    expect((await b.quota(ctx({ userId: 'both' }).origin)).concurrent.inProgress).toBe(5);

    const c = await backend.make({ imagesPerScope: 9 });
    const d = await backend.make({ imagesPerScope: 9 });
    const many = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 ? c : d).admit(ctx({ scopeId: 'g-shared', userId: `user-${i}` })),
      ),
    );
    expect(many.filter((r) => r.status === 'fulfilled')).toHaveLength(9);
    const refused = many.findIndex((r) => r.status === 'rejected');
    const q = await c.quota(ctx({ scopeId: 'g-shared', userId: `user-${refused}` }).origin);
    expect(q.user.used).toBe(0);
    expect(q.concurrent.inProgress).toBe(0);
    expect(q.scope.used).toBe(9);
  });

  it('an admission told its job id binds the slot at once: the end seen on another relay before the confirm frees it', async () => {
    const here = await backend.make({ concurrentPerUser: 1 });
    const there = await backend.make({ concurrentPerUser: 1 });
    const who = ctx({ userId: 'quick' });
    const granted = await here.admit({ ...who, jobId: 'bound-job' });
    there.finished('bound-job');
    await expect.poll(async () => (await there.quota(who.origin)).concurrent.inProgress).toBe(0);
    granted.confirm('bound-job');
    (await here.admit({ ...who, jobId: 'next-job' })).confirm('next-job');
    expect((await refusal(there.admit(ctx({ userId: 'quick' })))).code).toBe('RATE_LIMITED');
  });

  it('a cancelled admission told its job id gives back its slot, its binding and its images', async () => {
    const p = await backend.make({ concurrentPerUser: 1, imagesPerUser: 4 });
    const who = ctx({ userId: 'undo', count: 4 });
    await (await p.admit({ ...who, jobId: 'never-queued' })).cancel();
    const q = await p.quota(who.origin);
    expect(q.user.used).toBe(0);
    expect(q.concurrent.inProgress).toBe(0);
    (await p.admit({ ...who, jobId: 'queued' })).confirm('queued');
    // The cancelled job's binding is gone: its end (seen late) frees nothing of the new job.
    p.finished('never-queued');
    await new Promise((r) => setTimeout(r, 50));
    expect((await p.quota(who.origin)).concurrent.inProgress).toBe(1);
  });
});

describe('rateUserOf', () => {
  it('keys web clients by IPv4 address or IPv6 /64, and chat users by their id', () => {
    const web = (userId: string) => rateUserOf({ platform: 'web', userId });
    expect(web('203.0.113.9')).toBe('203.0.113.9');
    expect(web('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(web('2001:db8:a:b:1:2:3:4')).toBe('2001:db8:a:b::/64');
    expect(web('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(web('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(web('::1')).toBe('0:0:0:0::/64');
    expect(rateUserOf({ platform: 'discord', userId: '2001:db8::1' })).toBe('2001:db8::1');
    expect(rateUserOf({ platform: 'web' })).toBe('anonymous');
  });
});
