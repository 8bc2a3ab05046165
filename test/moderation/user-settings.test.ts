import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import {
  parseUserSettingsText,
  readUserDefaults,
  UserSettingsError,
} from '../../moderation/user-settings.ts';
import { BACKENDS, type Backend, ctx, refusal, submitterFor } from './helpers.ts';

/** The vary below reads its source from Discord's CDN, an allowed input host. */
const USER_SETTINGS_SUBMIT = {
  defaultCount: 4,
  inputPolicy: { hosts: ['cdn.discordapp.com'], allowHttp: false, secret: 'x'.repeat(32) },
};

const alice = { platform: 'discord', userId: 'alice', scopeId: 'g1', channelId: 'c1' } as const;

describe.each(BACKENDS)('per-user defaults on %s', (_name, makeBackend) => {
  let backend: Backend;
  beforeEach(() => {
    backend = makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('survive a restart (a new policy on the same store) and are kept per platform and user', async () => {
    const first = await backend.make();
    await first.changeUserDefaults(alice, { count: 2, aspect: '16:9', vary: 'subtle' });
    await first.changeUserDefaults({ platform: 'slack', userId: 'alice' }, { steps: 8 });
    await first.close();
    const second = await backend.make();
    expect(await second.userDefaults(alice)).toEqual({ count: 2, aspect: '16:9', vary: 'subtle' });
    expect(await second.userDefaults({ platform: 'slack', userId: 'alice' })).toEqual({ steps: 8 });
    expect(await second.userDefaults({ platform: 'discord', userId: 'bob' })).toEqual({});
    // Clearing one field keeps the others; reset removes them all.
    expect(await second.changeUserDefaults(alice, { aspect: null })).toEqual({
      count: 2,
      vary: 'subtle',
    });
    expect(await second.changeUserDefaults(alice, null)).toEqual({});
    const third = await backend.make();
    expect(await third.userDefaults(alice)).toEqual({});
  });

  it('apply in the submit path: aspect, count, steps for a generate, vary for a vary', async () => {
    const p = await backend.make();
    await p.changeUserDefaults(alice, { count: 2, aspect: '16:9', steps: 8, vary: 'subtle' });
    const sent: Job[] = [];
    const submit = submitterFor(p, sent, USER_SETTINGS_SUBMIT);
    const { job } = await submit({ request: { prompt: 'a fox' }, origin: alice });
    expect(job).toMatchObject({ count: 2, params: { width: 1344, height: 768, steps: 8 } });
    // What the request says wins over the user's defaults.
    const own = await submit({
      request: { prompt: 'a fox', count: 1, aspect: '1:1', steps: 4 },
      origin: alice,
    });
    expect(own.job).toMatchObject({ count: 1, params: { width: 1024, height: 1024, steps: 4 } });
    const vary = await submit({
      request: {
        prompt: 'a fox',
        input: { image: { kind: 'url', url: 'https://cdn.discordapp.com/a.png' } },
      },
      origin: alice,
    });
    expect(vary.job.task).toBe('vary');
    expect(vary.job.strength).toBe(0.35);
    // Another user gets the server's defaults.
    const bob = await submit({ request: { prompt: 'a fox' }, origin: { ...alice, userId: 'bob' } });
    expect(bob.job).toMatchObject({ count: 4, params: { width: 1024, height: 1024, steps: 4 } });
    expect(sent).toHaveLength(4);
  });

  it('are capped by the server: a user default over the cap is cut to it, an explicit request over it refused', async () => {
    const p = await backend.make({ maxImagesPerJob: 2, maxSteps: 6 });
    await p.changeUserDefaults(alice, { count: 4, steps: 20 });
    const sent: Job[] = [];
    const submit = submitterFor(p, sent, USER_SETTINGS_SUBMIT);
    const { job } = await submit({ request: { prompt: 'a fox' }, origin: alice });
    expect(job.count).toBe(2);
    expect(job.params.steps).toBe(6);
    // The server default (4) is capped too, for a user with no defaults of their own.
    const bob = await submit({ request: { prompt: 'a fox' }, origin: { ...alice, userId: 'bob' } });
    expect(bob.job.count).toBe(2);
    await expect(
      submit({ request: { prompt: 'a fox', count: 3 }, origin: alice }),
    ).rejects.toMatchObject({ code: 'INVALID_PARAMETERS', message: /at most 2 images/ });
    await expect(p.admit(ctx({ ...alice, params: { steps: 7 } }))).rejects.toMatchObject({
      code: 'INVALID_PARAMETERS',
      message: /at most 6 steps/,
    });
    expect(sent).toHaveLength(2);
    // A moderator's per-channel cap applies in that channel only.
    await p.change(
      'discord:g1',
      { kind: 'limits', channelId: 'c2', changes: { maxImagesPerJob: 1 } },
      { at: 1, actorId: 'mod', action: 'test' },
    );
    const inC2 = await submit({
      request: { prompt: 'a fox' },
      origin: { ...alice, channelId: 'c2' },
    });
    expect(inC2.job.count).toBe(1);
  });

  it('the web page has no server-side defaults', async () => {
    const p = await backend.make();
    const web = { platform: 'web', userId: '127.0.0.1' } as const;
    expect((await refusal(p.changeUserDefaults(web, { count: 1 }))).code).toBe('BAD_REQUEST');
    expect(await p.userDefaults(web)).toEqual({});
  });
});

describe('/imagine-settings text', () => {
  it('parses show, reset and name=value or name value pairs', () => {
    expect(parseUserSettingsText('')).toEqual({ verb: 'show' });
    expect(parseUserSettingsText(' reset ')).toEqual({ verb: 'reset' });
    expect(
      parseUserSettingsText('images=2 aspect 16:9 vary=Subtle visibility=me steps=default'),
    ).toEqual({
      verb: 'set',
      change: { count: 2, aspect: '16:9', vary: 'subtle', visibility: 'private', steps: null },
    });
  });

  it.each([
    ['images=9', 'images must be'],
    ['images=two', 'images must be'],
    ['aspect=5:1', 'aspect must be'],
    ['colour=red', 'unknown setting "colour"'],
    ['steps', 'say a value for "steps"'],
    ['vary=wild', 'vary must be'],
  ])('refuses %s with a sentence that says what is wrong', (text, message) => {
    expect(() => parseUserSettingsText(text)).toThrow(UserSettingsError);
    expect(() => parseUserSettingsText(text)).toThrow(message);
  });

  it('reads stored JSON leniently: bad fields dropped, good ones kept', () => {
    expect(readUserDefaults({ count: 9, aspect: '16:9', prompt: 'secret', steps: '4' })).toEqual({
      aspect: '16:9',
    });
    expect(readUserDefaults('nope')).toEqual({});
  });
});
