import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import { BACKENDS, type Backend, ctx, refusal, submitterFor } from './helpers.ts';

describe.each(BACKENDS)('settings on %s', (_name, makeBackend) => {
  let backend: Backend;
  beforeEach(() => {
    backend = makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('keeps settings and the audit log across a restart', async () => {
    const first = await backend.make();
    const scope = 'slack:T1';
    await first.change(
      scope,
      { kind: 'limits', changes: { imagesPerUser: 3, windowSeconds: 600 } },
      { at: 1000, actorId: 'U1', actorName: 'ana', action: 'limits per_user=3 window=10 min' },
    );
    await first.change(
      scope,
      { kind: 'limits', channelId: 'C9', changes: { maxImageSide: 512 } },
      { at: 2000, actorId: 'U1', action: 'limits in C9' },
    );
    await first.change(
      scope,
      { kind: 'words-add', words: ['kraken', 'sea monster'] },
      { at: 3000, actorId: 'U2', action: 'words add' },
    );
    await first.change(
      scope,
      { kind: 'channel-deny', channelId: 'C5' },
      { at: 4000, actorId: 'U2', action: 'channels deny' },
    );
    await first.close();

    const second = await backend.make();
    expect(await second.settingsOf(scope)).toEqual({
      limits: { imagesPerUser: 3, windowSeconds: 600 },
      channels: { C9: { maxImageSide: 512 } },
      blockedWords: ['kraken', 'sea monster'],
      allowedChannels: [],
      deniedChannels: ['C5'],
    });
    expect((await second.store.audit(scope, 10)).map((e) => [e.at, e.actorId])).toEqual([
      [4000, 'U2'],
      [3000, 'U2'],
      [2000, 'U1'],
      [1000, 'U1'],
    ]);
    // And the restarted policy enforces them.
    const origin = { platform: 'slack' as const, scopeId: 'T1', userId: 'U7' };
    expect((await refusal(second.admit(ctx({ ...origin, channelId: 'C5' })))).code).toBe(
      'CHANNEL_NOT_ALLOWED',
    );
    expect(
      (await refusal(second.admit(ctx({ ...origin, channelId: 'C1', prompt: 'a Sea-Monster' }))))
        .code,
    ).toBe('BLOCKED_CONTENT');
    expect((await second.quota({ ...origin, channelId: 'C1' })).limits).toMatchObject({
      imagesPerUser: 3,
      windowSeconds: 600,
      maxImageSide: 2048,
    });
  });

  it('clears overrides back to the defaults, and keeps scopes apart', async () => {
    const p = await backend.make({ imagesPerUser: 20 });
    const audit = { at: 1, actorId: 'm', action: 't' };
    await p.change('discord:A', { kind: 'limits', changes: { imagesPerUser: 2 } }, audit);
    await p.change('discord:B', { kind: 'limits', changes: { imagesPerUser: 5 } }, audit);
    await p.change('discord:A', { kind: 'limits', changes: { imagesPerUser: null } }, audit);
    expect((await p.settingsOf('discord:A')).limits).toEqual({});
    expect((await p.settingsOf('discord:B')).limits).toEqual({ imagesPerUser: 5 });
    await p.change('discord:B', { kind: 'words-add', words: ['x1', 'x2'] }, audit);
    await p.change('discord:B', { kind: 'words-remove', words: ['x1'] }, audit);
    expect((await p.settingsOf('discord:B')).blockedWords).toEqual(['x2']);
    expect((await p.settingsOf('discord:A')).blockedWords).toEqual([]);
  });

  it('channel allow and deny replace each other for the same channel', async () => {
    const p = await backend.make();
    const audit = { at: 1, actorId: 'm', action: 't' };
    await p.change('discord:A', { kind: 'channel-deny', channelId: 'c1' }, audit);
    await p.change('discord:A', { kind: 'channel-allow', channelId: 'c1' }, audit);
    await p.change('discord:A', { kind: 'channel-allow', channelId: 'c2' }, audit);
    const s = await p.settingsOf('discord:A');
    expect(s.allowedChannels).toEqual(['c1', 'c2']);
    expect(s.deniedChannels).toEqual([]);
  });

  it('a change made on another relay is seen by the next request here, every time', async () => {
    // Two policies on one store: two relay processes sharing the SQLite file, or Redis.
    const here = await backend.make();
    const there = await backend.make();
    const scope = 'discord:g9';
    const origin = { scopeId: 'g9', userId: 'u9', channelId: 'c1' };
    const audit = { at: 1, actorId: 'm', action: 't' };
    const sent: Job[] = [];
    const submit = submitterFor(here, sent);
    const submitted = async (request: Record<string, unknown>) =>
      (await submit({ request: { prompt: 'a fox', ...request }, origin: ctx(origin).origin })).job;
    // Read (and kept in memory) here first, by a direct admission and by the submit path.
    await (await here.admit(ctx({ ...origin, prompt: 'a kraken' }))).cancel();
    expect((await submitted({ prompt: 'a kraken' })).count).toBe(4);

    await there.change(scope, { kind: 'words-add', words: ['kraken'] }, audit);
    expect((await refusal(here.admit(ctx({ ...origin, prompt: 'a kraken' })))).code).toBe(
      'BLOCKED_CONTENT',
    );
    await there.change(scope, { kind: 'words-remove', words: ['kraken'] }, audit);
    expect((await submitted({ prompt: 'a kraken' })).count).toBe(4);
    await there.change(scope, { kind: 'words-add', words: ['kraken'] }, audit);
    expect((await refusal(submitted({ prompt: 'a kraken' }))).code).toBe('BLOCKED_CONTENT');
    await there.change(scope, { kind: 'words-remove', words: ['kraken'] }, audit);
    await (await here.admit(ctx({ ...origin, prompt: 'a kraken' }))).cancel();

    // A request naming no count gets the new cap at once, whichever path reads it.
    await there.change(scope, { kind: 'limits', changes: { maxImagesPerJob: 2 } }, audit);
    expect((await submitted({})).count).toBe(2);
    expect((await refusal(here.admit(ctx({ ...origin, count: 3 })))).code).toBe(
      'INVALID_PARAMETERS',
    );
    await there.change(scope, { kind: 'limits', changes: { maxImagesPerJob: 3 } }, audit);
    expect((await submitted({})).count).toBe(3);
    await there.change(scope, { kind: 'channel-deny', channelId: 'c1' }, audit);
    expect((await refusal(submitted({}))).code).toBe('CHANNEL_NOT_ALLOWED');
    expect((await refusal(here.admit(ctx(origin)))).code).toBe('CHANNEL_NOT_ALLOWED');
    await there.change(scope, { kind: 'channels-clear' }, audit);
    expect((await submitted({})).count).toBe(3);

    // A user's own defaults, set through another relay, apply to the next request here.
    await there.changeUserDefaults(ctx(origin).origin, { count: 1 });
    expect((await submitted({})).count).toBe(1);
    await there.changeUserDefaults(ctx(origin).origin, null);
    expect((await submitted({})).count).toBe(3);
  });

  it('a settings read is never changed by its reader', async () => {
    const p = await backend.make();
    await p.change(
      'discord:A',
      { kind: 'words-add', words: ['x1'] },
      { at: 1, actorId: 'm', action: 't' },
    );
    const first = await p.settingsOf('discord:A');
    try {
      first.blockedWords.push('x2');
    } catch {
      // A read kept in memory is frozen: it cannot be changed for the next reader.
    }
    expect((await p.settingsOf('discord:A')).blockedWords).toEqual(['x1']);
  });
});
