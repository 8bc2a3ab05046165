import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asModeration } from '../../moderation/index.ts';
import { postToSlackApp, slashCommandForm } from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { FakeSlack, slackHttpEnv } from './helpers.ts';

describe('Slack /imagine-settings (fake Slack, embedded store)', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    fake = await FakeSlack.start({ users: [{ id: 'U0ALICE', name: 'alice' }] });
    app = await startTestImagine(slackHttpEnv(fake), { role: 'relay' });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  async function slash(text: string): Promise<{ response_type?: string; text?: string }> {
    const res = await postToSlackApp(
      `${app.url}/slack/events`,
      slashCommandForm({
        command: '/imagine-settings',
        text,
        userId: 'U0ALICE',
        channelId: 'C0GENERAL',
        responseUrl: fake.responseUrl(`settings-${Math.random()}`),
      }),
    );
    expect(res.status).toBe(200);
    return JSON.parse(await res.text());
  }

  it('saves, shows and resets the caller’s defaults, ephemerally', async () => {
    const saved = await slash('images=2 vary=subtle visibility=private');
    expect(saved.response_type).toBe('ephemeral');
    expect(saved.text).toContain('images: 2');
    // Slack cannot post a file to one person in a channel: the answer says so.
    expect(saved.text).toContain('always public');
    const policy = asModeration(app.relay!.relay.admission)!;
    expect(await policy.userDefaults({ platform: 'slack', userId: 'U0ALICE' })).toEqual({
      count: 2,
      vary: 'subtle',
      visibility: 'private',
    });
    expect((await slash('')).text).toContain('vary: subtle');
    expect((await slash('reset')).text).toContain('images: server default');
  });

  it('refuses a malformed setting with what was wrong', async () => {
    const answer = await slash('images=12');
    expect(answer.response_type).toBe('ephemeral');
    expect(answer.text).toContain('images must be');
  });
});
