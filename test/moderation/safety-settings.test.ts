import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../contracts/config.ts';
import { decideSafety } from '../../contracts/safety.ts';
import { parseAdminText, runAdminCommand, runAdminText } from '../../moderation/admin.ts';
import { admissionFromConfig } from '../../moderation/index.ts';
import type { ModeratorEvidence } from '../../moderation/permissions.ts';
import type { ModerationPolicy } from '../../moderation/policy.ts';
import { BACKENDS, type Backend, ctx } from './helpers.ts';

const discordMod: ModeratorEvidence = { platform: 'discord', permissions: String(1n << 5n) };
const discordMember: ModeratorEvidence = { platform: 'discord', permissions: String(1n << 11n) };

describe('parsing safety settings', () => {
  it.each([
    ['set safety=review', { safety: 'review' }],
    ['set safety=BLOCK safety_threshold=0.35', { safety: 'block', safetyThreshold: 0.35 }],
    ['set safety_threshold=80%', { safetyThreshold: 0.8 }],
    ['set safety_threshold=0', { safetyThreshold: 0 }],
    ['set nsfw_safety=off', { safetyAgeRestricted: 'off' }],
    ['set nsfw_safety=same', { safetyAgeRestricted: 'same' }],
    ['set review_channel=<#C0MODS|mods>', { reviewChannel: 'C0MODS' }],
    ['set review_channel=123456789012345678', { reviewChannel: '123456789012345678' }],
    ['set review_channel=none', { reviewChannel: '' }],
    ['set safety=default', { safety: null }],
  ])('%j', (text, changes) => {
    expect(parseAdminText(text)).toEqual({ verb: 'limits', changes });
  });

  it.each([
    'set safety=maybe',
    'set safety_threshold=1.5',
    'set safety_threshold=-0.1',
    'set safety_threshold=high',
    'set nsfw_safety=sometimes',
    'set review_channel=#mods',
  ])('refuses %j with a coded 400 that names the setting', (text) => {
    expect(() => parseAdminText(text)).toThrowError(
      expect.objectContaining({ code: 'BAD_REQUEST' }),
    );
  });
});

describe.each(BACKENDS)('safety settings on %s', (_name, makeBackend) => {
  let backend: Backend;
  let policy: ModerationPolicy;
  beforeEach(async () => {
    backend = makeBackend();
    policy = await backend.make({ safety: 'spoiler', safetyThreshold: 0.6 });
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  const asMod = (text: string, evidence: ModeratorEvidence = discordMod) =>
    runAdminText(policy, {
      platform: 'discord',
      scopeId: 'g1',
      actor: { id: 'm1', name: 'Mira' },
      evidence,
      text,
    });

  it('a job carries the configured default until a moderator changes it', async () => {
    expect((await policy.admit(ctx())).safety).toEqual({ mode: 'spoiler', threshold: 0.6 });
  });

  it('per server, per channel, and for age-restricted channels; stored across a restart', async () => {
    expect(
      await asMod('set safety=review safety_threshold=0.4 review_channel=<#777777777|mods>'),
    ).toMatchObject({ ok: true });
    expect(await asMod('set <#5555555> safety=block')).toMatchObject({ ok: true });
    expect(await asMod('set nsfw_safety=off')).toMatchObject({ ok: true });

    const again = await backend.make({ safety: 'spoiler', safetyThreshold: 0.6 });
    const server = (await again.admit(ctx({ channelId: 'c1' }))).safety;
    expect(server).toEqual({ mode: 'review', threshold: 0.4, reviewChannelId: '777777777' });
    const channel = (await again.admit(ctx({ channelId: '5555555' }))).safety;
    expect(channel).toEqual({ mode: 'block', threshold: 0.4, reviewChannelId: '777777777' });
    const nsfw = (await again.admit(ctx({ channelId: 'c1', ageRestricted: true }))).safety;
    expect(nsfw?.mode).toBe('off');
    // Another server is untouched.
    expect((await again.admit(ctx({ scopeId: 'g2' }))).safety).toEqual({
      mode: 'spoiler',
      threshold: 0.6,
    });

    const shown = await asMod('show');
    expect(shown.text).toContain('safety: review (server)');
    expect(shown.text).toContain('safety_threshold: 0.4 (server)');
    expect(shown.text).toContain('review_channel: <#777777777> (server)');
    expect(shown.text).toContain('Mira (m1): limits: safety=review');
  });

  it('a member cannot change safety, even with the platform gate bypassed', async () => {
    expect(await asMod('set safety=off', discordMember)).toMatchObject({
      ok: false,
      code: 'FORBIDDEN',
    });
    expect((await policy.admit(ctx())).safety?.mode).toBe('spoiler');
  });

  it('a malformed threshold answers what is wrong and changes nothing', async () => {
    const reply = await asMod('set safety_threshold=2');
    expect(reply).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
    expect(reply.text).toContain('safety_threshold');
    expect((await policy.settingsOf('discord:g1')).limits).toEqual({});
  });

  it('audit notes go to the same log as changes, newest first', async () => {
    await policy.note('discord:g1', { at: 1, actorId: 'imagine', action: 'safety: block job J' });
    await runAdminCommand(policy, {
      platform: 'discord',
      scopeId: 'g1',
      actor: { id: 'm1' },
      evidence: discordMod,
      command: { verb: 'limits', changes: { safety: 'block' } },
    });
    const audit = await policy.store.audit('discord:g1', 10);
    expect(audit.map((a) => a.action)).toEqual(['limits: safety=block', 'safety: block job J']);
  });
});

describe('safety from configuration', () => {
  it('defaults, the web page scope and age-restricted channels', async () => {
    const config = loadConfig({
      SAFETY: 'review',
      SAFETY_THRESHOLD: '0.25',
      SAFETY_WEB: 'block',
      SAFETY_AGE_RESTRICTED: 'spoiler',
      DATA_DIR: mkdtempSync(join(tmpdir(), 'imagine-safety-')),
    });
    const policy = await admissionFromConfig(config, pino({ level: 'silent' }));
    try {
      expect((await policy.admit(ctx())).safety).toEqual({ mode: 'review', threshold: 0.25 });
      expect(
        (await policy.admit(ctx({ platform: 'web', scopeId: 'web', channelId: undefined }))).safety,
      ).toEqual({ mode: 'block', threshold: 0.25 });
      expect((await policy.admit(ctx({ ageRestricted: true }))).safety?.mode).toBe('spoiler');
    } finally {
      await policy.close();
    }
  });

  it.each([
    ['SAFETY', 'sometimes'],
    ['SAFETY_THRESHOLD', '1.2'],
    ['SAFETY_MODEL', 'resnet'],
    ['SAFETY_BACKEND', 'tensorflow'],
  ])('%s=%s stops start-up naming the variable', (key, value) => {
    expect(() => loadConfig({ [key]: value })).toThrowError(new RegExp(key));
  });
});

describe('deciding one image', () => {
  it.each([
    [{ mode: 'off', threshold: 0 } as const, 1, 'deliver'],
    [{ mode: 'spoiler', threshold: 0.6 } as const, 0.59, 'deliver'],
    [{ mode: 'spoiler', threshold: 0.6 } as const, 0.6, 'spoiler'],
    [{ mode: 'block', threshold: 0 } as const, 0, 'block'],
    [{ mode: 'review', threshold: 0.5, reviewChannelId: 'C1' } as const, 0.9, 'review'],
    // Review with nowhere to hold the image must not let it through.
    [{ mode: 'review', threshold: 0.5 } as const, 0.9, 'block'],
  ])('%j at %s → %s', (policy, score, action) => {
    expect(decideSafety(policy, score)).toBe(action);
  });
});
