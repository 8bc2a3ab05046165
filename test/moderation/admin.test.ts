import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  parseAdminText,
  runAdminCommand,
  runAdminText,
  runQuotaCommand,
} from '../../moderation/admin.ts';
import {
  discordCanModerate,
  discordCanModerateJobs,
  type ModeratorEvidence,
} from '../../moderation/permissions.ts';
import type { ModerationPolicy } from '../../moderation/policy.ts';
import { BACKENDS, type Backend, ctx, refusal } from './helpers.ts';

const MANAGE_GUILD = String(1n << 5n);
const ADMINISTRATOR = String(1n << 3n);
const MANAGE_MESSAGES = String(1n << 13n);
const SEND_MESSAGES_AND_MORE = String((1n << 11n) | (1n << 10n) | (1n << 6n));

const discordMod: ModeratorEvidence = { platform: 'discord', permissions: MANAGE_GUILD };
const discordMember: ModeratorEvidence = {
  platform: 'discord',
  permissions: SEND_MESSAGES_AND_MORE,
};

describe('moderator decision', () => {
  it.each([
    [MANAGE_GUILD, true],
    [ADMINISTRATOR, true],
    [String((1n << 5n) | (1n << 40n)), true],
    [SEND_MESSAGES_AND_MORE, false],
    ['0', false],
    [undefined, false],
    ['not-a-number', false],
  ])('Discord permissions %s → %s', (bits, expected) => {
    expect(discordCanModerate(bits)).toBe(expected);
  });

  // Others' jobs (Cancel, Approve / Reject) are moderated by whoever may delete others'
  // messages there, as Discord's own moderators do; settings stay Manage Server's.
  it.each([
    [MANAGE_MESSAGES, true, false],
    [String(BigInt(SEND_MESSAGES_AND_MORE) | (1n << 13n)), true, false],
    [MANAGE_GUILD, true, true],
    [ADMINISTRATOR, true, true],
    // Kick, Ban or Moderate Members alone (timeouts) are not about messages.
    [String((1n << 1n) | (1n << 2n) | (1n << 40n)), false, false],
    [SEND_MESSAGES_AND_MORE, false, false],
    [undefined, false, false],
    ['8192x', false, false],
  ])('Discord permissions %s → jobs %s, settings %s', (bits, jobs, settings) => {
    expect(discordCanModerateJobs(bits)).toBe(jobs);
    expect(discordCanModerate(bits)).toBe(settings);
  });
});

describe('parsing /imagine-admin text', () => {
  it.each([
    ['', { verb: 'help' }],
    ['show', { verb: 'show' }],
    ['show <#C123|art>', { verb: 'show', channelId: 'C123' }],
    [
      'limits per_user=5 window=30m builtin_words=off',
      {
        verb: 'limits',
        changes: { imagesPerUser: 5, windowSeconds: 1800, builtinBlockedWords: false },
      },
    ],
    [
      'limits <#C9> max_side=512 concurrent=default',
      { verb: 'limits', channelId: 'C9', changes: { maxImageSide: 512, concurrentPerUser: null } },
    ],
    [
      'set per_user 5 window 1h',
      { verb: 'limits', changes: { imagesPerUser: 5, windowSeconds: 3600 } },
    ],
    [
      'set <#C9> reset',
      {
        verb: 'limits',
        channelId: 'C9',
        changes: {
          imagesPerUser: null,
          imagesPerScope: null,
          windowSeconds: null,
          concurrentPerUser: null,
          maxQueueLength: null,
          maxImageSide: null,
          maxImagesPerJob: null,
          maxSteps: null,
          models: null,
          builtinBlockedWords: null,
          safety: null,
          safetyThreshold: null,
          safetyAgeRestricted: null,
          reviewChannel: null,
        },
      },
    ],
    ['words add kraken, sea monster', { verb: 'words-add', words: ['kraken', 'sea monster'] }],
    ['words add kraken squid', { verb: 'words-add', words: ['kraken', 'squid'] }],
    ['words remove kraken', { verb: 'words-remove', words: ['kraken'] }],
    ['words list', { verb: 'words-list' }],
    ['channels allow <#C1> <#C2|b>', { verb: 'channels-allow', channelIds: ['C1', 'C2'] }],
    [
      'channels deny <#123456789012345678>',
      { verb: 'channels-deny', channelIds: ['123456789012345678'] },
    ],
    ['channels clear', { verb: 'channels-clear' }],
  ])('%j', (text, expected) => {
    expect(parseAdminText(text)).toEqual(expected);
  });

  it.each([
    'limits per_user=lots',
    'set per_user',
    'limits per_user=-1',
    'limits window=2s',
    'limits colour=blue',
    'limits',
    'channels allow #general',
    'words frobnicate',
    'explode',
  ])('refuses %j with a coded 400', (text) => {
    expect(() => parseAdminText(text)).toThrowError(
      expect.objectContaining({ code: 'BAD_REQUEST' }),
    );
  });
});

describe.each(BACKENDS)('admin commands on %s', (_name, makeBackend) => {
  let backend: Backend;
  let policy: ModerationPolicy;
  beforeEach(async () => {
    backend = makeBackend();
    policy = await backend.make({ imagesPerUser: 10 }, { slackAdminUsers: ['UHELPER'] });
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('refuses a non-moderator even when the platform gate was bypassed, and changes nothing', async () => {
    const reply = await runAdminCommand(policy, {
      platform: 'discord',
      scopeId: 'g1',
      actor: { id: 'u-sneaky' },
      evidence: discordMember,
      command: { verb: 'limits', changes: { imagesPerUser: 1000 } },
    });
    expect(reply).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect((await policy.settingsOf('discord:g1')).limits).toEqual({});
    expect(await policy.store.audit('discord:g1', 10)).toEqual([]);
  });

  it('a moderator sets limits; show reports them and who changed what, when', async () => {
    const at = Date.UTC(2026, 10, 26, 9, 30);
    const set = await runAdminCommand(
      policy,
      {
        platform: 'discord',
        scopeId: 'g1',
        actor: { id: 'm1', name: 'Mira' },
        evidence: discordMod,
        command: { verb: 'limits', changes: { imagesPerUser: 2 } },
      },
      () => at,
    );
    expect(set.ok).toBe(true);
    const shown = await runAdminCommand(policy, {
      platform: 'discord',
      scopeId: 'g1',
      actor: { id: 'm2' },
      evidence: { platform: 'discord', permissions: ADMINISTRATOR },
      command: { verb: 'show' },
    });
    expect(shown.ok).toBe(true);
    expect(shown.text).toContain('per_user: 2 (server)');
    expect(shown.text).toContain('2026-11-26 09:30 UTC — Mira (m1): limits: per_user=2');
    expect(shown.text.length).toBeLessThanOrEqual(2000);
    // The new limit is what admission enforces.
    await policy.admit(ctx());
    await policy.admit(ctx());
    expect((await refusal(policy.admit(ctx()))).code).toBe('RATE_LIMITED');
  });

  it('Slack: workspace admins and listed users may moderate; members may not', async () => {
    const roles: Record<string, { is_admin?: boolean; is_owner?: boolean }> = {
      UADMIN: { is_admin: true },
      UOWNER: { is_owner: true },
      UMEMBER: {},
    };
    const lookups: string[] = [];
    const slack = (userId: string): ModeratorEvidence => ({
      platform: 'slack',
      userId,
      lookupUser: async (id) => {
        lookups.push(id);
        return roles[id];
      },
    });
    const run = (userId: string, text: string) =>
      runAdminText(policy, {
        platform: 'slack',
        scopeId: 'T1',
        actor: { id: userId },
        evidence: slack(userId),
        text,
      });
    expect(await run('UMEMBER', 'words add kraken')).toMatchObject({
      ok: false,
      code: 'FORBIDDEN',
    });
    expect(await run('UMEMBER', 'nonsense verb')).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect(await run('UADMIN', 'words add kraken')).toMatchObject({ ok: true });
    expect(await run('UOWNER', 'channels allow <#C1|art>')).toMatchObject({ ok: true });
    expect(await run('UHELPER', 'limits per_user=4')).toMatchObject({ ok: true });
    expect(await run('UADMIN', 'limits per_user=many')).toMatchObject({
      ok: false,
      code: 'BAD_REQUEST',
    });
    expect(lookups).toContain('UMEMBER');
    expect(lookups).not.toContain('UHELPER');
    const s = await policy.settingsOf('slack:T1');
    expect(s).toMatchObject({
      blockedWords: ['kraken'],
      allowedChannels: ['C1'],
      limits: { imagesPerUser: 4 },
    });
    const audit = await policy.store.audit('slack:T1', 10);
    expect(audit.map((e) => e.actorId)).toEqual(['UHELPER', 'UOWNER', 'UADMIN']);
  });

  it('a failing users.info lookup means no', async () => {
    const reply = await runAdminText(policy, {
      platform: 'slack',
      scopeId: 'T1',
      actor: { id: 'U1' },
      evidence: {
        platform: 'slack',
        userId: 'U1',
        lookupUser: async () => {
          throw new Error('ratelimited');
        },
      },
      text: 'show',
    });
    expect(reply).toMatchObject({ ok: false, code: 'FORBIDDEN' });
  });

  it('refuses admin commands outside a server', async () => {
    const reply = await runAdminCommand(policy, {
      platform: 'discord',
      scopeId: undefined,
      actor: { id: 'm1' },
      evidence: discordMod,
      command: { verb: 'show' },
    });
    expect(reply).toMatchObject({ ok: false, code: 'FORBIDDEN' });
  });

  it('words add normalises entries and blocks them; words remove unblocks', async () => {
    const base = {
      platform: 'discord' as const,
      scopeId: 'g1',
      actor: { id: 'm1' },
      evidence: discordMod,
    };
    await runAdminCommand(policy, { ...base, command: { verb: 'words-add', words: ['Krákén'] } });
    expect((await policy.settingsOf('discord:g1')).blockedWords).toEqual(['kraken']);
    expect((await refusal(policy.admit(ctx({ prompt: 'KRAKEN attack' })))).code).toBe(
      'BLOCKED_CONTENT',
    );
    const listed = await runAdminCommand(policy, { ...base, command: { verb: 'words-list' } });
    expect(listed.text).toContain('kraken');
    await runAdminCommand(policy, {
      ...base,
      command: { verb: 'words-remove', words: ['KRAKEN'] },
    });
    await expect(policy.admit(ctx({ prompt: 'KRAKEN attack' }))).resolves.toBeDefined();
    const bad = await runAdminCommand(policy, {
      ...base,
      command: { verb: 'words-add', words: ['!!'] },
    });
    expect(bad).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
  });

  it('/imagine-quota reports what is left and when it resets', async () => {
    const origin = ctx({ userId: 'q1' }).origin;
    const before = await policy.quota(origin);
    expect(before.user).toEqual({ limit: 10, used: 0, remaining: 10, resetsInSeconds: 0 });
    for (let i = 0; i < 3; i++) (await policy.admit(ctx({ userId: 'q1' }))).confirm(`q1-${i}`);
    await policy.admit(ctx({ userId: 'someone-else' }));
    const after = await policy.quota(origin);
    expect(after.user).toMatchObject({ limit: 10, used: 3, remaining: 7 });
    expect(after.user.resetsInSeconds).toBeGreaterThan(3500);
    expect(after.user.resetsInSeconds).toBeLessThanOrEqual(3600);
    expect(after.scope).toMatchObject({ used: 4 });
    expect(after.concurrent.inProgress).toBe(3);
    const reply = await runQuotaCommand(policy, origin);
    expect(reply.ok).toBe(true);
    expect(reply.text).toContain('You have 7 of your 10 images per hour left.');
  });
});
