import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImagineError } from '../../contracts/errors.ts';
import type { Job, Origin } from '../../contracts/job.ts';
import { parseAdminText, runAdminCommand, runAdminText } from '../../moderation/admin.ts';
import type { ModeratorEvidence } from '../../moderation/permissions.ts';
import { BACKENDS, type Backend, submitterFor } from './helpers.ts';

const OFFERED = ['flux', 'sdxl', 'turbo'];
const discordMod: ModeratorEvidence = { platform: 'discord', permissions: String(1n << 5n) };
const slackAdmin: ModeratorEvidence = {
  platform: 'slack',
  userId: 'U1',
  lookupUser: async () => ({ is_admin: true }),
};
const inGuild = (channelId: string): Origin => ({
  platform: 'discord',
  userId: 'u1',
  scopeId: 'g1',
  channelId,
});

async function refusedWith(promise: Promise<unknown>): Promise<ImagineError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ImagineError)) throw new Error(`expected a refusal, got ${String(err)}`);
  return err;
}

describe('the models setting', () => {
  it('parses a list, `all` and `default`; refuses names that are not model names', () => {
    expect(parseAdminText('set models=sdxl,flux')).toEqual({
      verb: 'limits',
      changes: { models: ['sdxl', 'flux'] },
    });
    expect(parseAdminText('set <#C123|art> models all')).toEqual({
      verb: 'limits',
      channelId: 'C123',
      changes: { models: [] },
    });
    expect(parseAdminText('set models=default')).toEqual({
      verb: 'limits',
      changes: { models: null },
    });
    // Names may hold spaces, so `models=` takes the rest of the line.
    expect(parseAdminText('set max_images=2 models=Flux Schnell, sdxl')).toEqual({
      verb: 'limits',
      changes: { maxImagesPerJob: 2, models: ['Flux Schnell', 'sdxl'] },
    });
    expect(() => parseAdminText('set models=<script>')).toThrow(/not a valid models/);
    expect(() => parseAdminText('set models=,')).toThrow(/not a valid models/);
  });
});

describe.each(BACKENDS)('per-server models on %s', (_name, makeBackend) => {
  let backend: Backend;
  beforeEach(() => {
    backend = makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('moderators restrict models per server and per channel; the restriction survives a restart and the submit path enforces it', async () => {
    const first = await backend.make({}, { models: OFFERED });
    const set = await runAdminCommand(first, {
      platform: 'discord',
      scopeId: 'g1',
      actor: { id: 'mod' },
      evidence: discordMod,
      command: { verb: 'limits', changes: { models: ['sdxl', 'turbo'] } },
    });
    expect(set).toMatchObject({ ok: true });
    expect(set.text).toContain('models=sdxl,turbo');
    const channel = await runAdminCommand(first, {
      platform: 'discord',
      scopeId: 'g1',
      actor: { id: 'mod' },
      evidence: discordMod,
      command: { verb: 'limits', channelId: '700000000000000001', changes: { models: ['flux'] } },
    });
    expect(channel.ok).toBe(true);
    await first.close();

    const second = await backend.make({}, { models: OFFERED });
    const sent: Job[] = [];
    const submit = submitterFor(second, sent, { models: OFFERED });
    // Server-wide: flux (the offered default) is not allowed, so the scope's first allowed one.
    await submit({ request: { prompt: 'a fox' }, origin: inGuild('700000000000000009') });
    expect(sent.at(-1)?.model).toBe('sdxl');
    await submit({
      request: { prompt: 'a fox', model: 'turbo' },
      origin: inGuild('700000000000000009'),
    });
    expect(sent.at(-1)?.model).toBe('turbo');
    const refused = await refusedWith(
      submit({
        request: { prompt: 'a fox', model: 'flux' },
        origin: inGuild('700000000000000009'),
      }),
    );
    expect(refused.code).toBe('INVALID_PARAMETERS');
    expect(refused.statusCode).toBe(400);
    expect(refused.message).toBe('model flux is not allowed here; choose one of sdxl, turbo');
    // The channel's own list replaces the server's.
    await submit({ request: { prompt: 'a fox' }, origin: inGuild('700000000000000001') });
    expect(sent.at(-1)?.model).toBe('flux');
    const inChannel = await refusedWith(
      submit({
        request: { prompt: 'a fox', model: 'sdxl' },
        origin: inGuild('700000000000000001'),
      }),
    );
    expect(inChannel.message).toBe('model sdxl is not allowed here; choose one of flux');
    // Other servers are not restricted: a request without a model is left to the worker.
    await submit({
      request: { prompt: 'a fox' },
      origin: { platform: 'discord', userId: 'u1', scopeId: 'g2', channelId: '1' },
    });
    expect(sent.at(-1)?.model).toBeUndefined();
    // Refusals made no jobs.
    expect(sent).toHaveLength(4);
  });

  it('the offered default stays the default when allowed; `models=all` on a channel lifts the server restriction; `default` clears', async () => {
    const policy = await backend.make({}, { models: OFFERED });
    const slack = { platform: 'slack' as const, scopeId: 'T1', actor: { id: 'U1' } };
    expect(
      (
        await runAdminText(policy, {
          ...slack,
          evidence: slackAdmin,
          text: 'set models=turbo,flux',
        })
      ).ok,
    ).toBe(true);
    expect(
      (
        await runAdminText(policy, {
          ...slack,
          evidence: slackAdmin,
          text: 'set <#C0123456|art> models=all',
        })
      ).ok,
    ).toBe(true);
    const sent: Job[] = [];
    const submit = submitterFor(policy, sent, { models: OFFERED });
    const origin = (channelId: string): Origin => ({
      platform: 'slack',
      userId: 'U7',
      scopeId: 'T1',
      channelId,
    });
    await submit({ request: { prompt: 'a fox' }, origin: origin('C0999999') });
    expect(sent.at(-1)?.model).toBe('flux');
    await submit({ request: { prompt: 'a fox', model: 'sdxl' }, origin: origin('C0123456') });
    expect(sent.at(-1)?.model).toBe('sdxl');
    expect(
      (await runAdminText(policy, { ...slack, evidence: slackAdmin, text: 'set models=default' }))
        .ok,
    ).toBe(true);
    await submit({ request: { prompt: 'a fox', model: 'sdxl' }, origin: origin('C0999999') });
    expect(sent.at(-1)?.model).toBe('sdxl');
  });

  it('refuses models that are not offered, and non-moderators, saying why', async () => {
    const policy = await backend.make({}, { models: OFFERED });
    const slack = { platform: 'slack' as const, scopeId: 'T1', actor: { id: 'U1' } };
    const unknown = await runAdminText(policy, {
      ...slack,
      evidence: slackAdmin,
      text: 'set models=sdxl,dalle',
    });
    expect(unknown).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
    expect(unknown.text).toBe('Not offered here: dalle. The models offered are flux, sdxl, turbo.');
    const member = await runAdminText(policy, {
      ...slack,
      evidence: { platform: 'slack', userId: 'U1', lookupUser: async () => ({}) },
      text: 'set models=sdxl',
    });
    expect(member).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect((await policy.settingsOf('slack:T1')).limits).toEqual({});

    const none = await backend.make();
    const noChoice = await runAdminText(none, {
      ...slack,
      evidence: slackAdmin,
      text: 'set models=sdxl',
    });
    expect(noChoice.text).toMatch(/offers no choice of model/);
  });
});
