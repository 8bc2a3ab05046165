import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asModeration } from '../../moderation/index.ts';
import { FAKE_TEAM_ID } from '../fakes/slack/fake-slack.ts';
import { postToSlackApp, slashCommandForm } from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { FakeSlack, slackHttpEnv } from '../slack/helpers.ts';

describe('Slack /imagine-admin and /imagine-quota end to end (fake Slack)', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let dataDir: string;
  let eventsUrl: string;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-slack-mod-'));
    fake = await FakeSlack.start({
      users: [
        { id: 'U0ALICE', name: 'alice' },
        { id: 'U0ADMIN', name: 'ada', is_admin: true },
        { id: 'U0OWNER', name: 'otto', is_owner: true },
      ],
    });
    app = await startTestImagine(
      {
        ...slackHttpEnv(fake),
        DATA_DIR: dataDir,
        SLACK_ADMIN_USERS: 'U0HELPER',
        LIMIT_IMAGES_PER_USER: '10',
      },
      { role: 'relay' },
    );
    eventsUrl = `${app.url}/slack/events`;
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const policy = () => asModeration(app.relay!.relay.admission)!;

  /** Run a slash command; resolves with the ack body and what was posted to response_url. */
  async function slash(command: string, text: string, userId: string, channelId = 'C0GENERAL') {
    const id = `${command.slice(1)}-${userId}-${Math.random().toString(36).slice(2)}`;
    const res = await postToSlackApp(
      eventsUrl,
      // Admin text carries Slack's own channel markup (<#C…|name>), sent unescaped as Slack does.
      slashCommandForm({
        command,
        text,
        sentText: text,
        userId,
        channelId,
        responseUrl: fake.responseUrl(id),
      }),
    );
    expect(res.status).toBe(200);
    const ackBody = await res.text();
    return { ackBody, id };
  }
  async function responded(id: string): Promise<Record<string, unknown>> {
    const r = await fake.waitFor(() => fake.responses.find((x) => x.id === id));
    return r.body;
  }

  it('refuses a member (users.info says not admin), changing nothing', async () => {
    const { id } = await slash('/imagine-admin', 'limits per_user=1', 'U0ALICE');
    const body = await responded(id);
    expect(body.response_type).toBe('ephemeral');
    expect(fake.callsOf('users.info').map((c) => c.args.user)).toContain('U0ALICE');
    expect((await policy().settingsOf(`slack:${FAKE_TEAM_ID}`)).limits).toEqual({});
    expect(await policy().store.audit(`slack:${FAKE_TEAM_ID}`, 5)).toEqual([]);
  });

  it('lets a workspace admin set limits, and the audit log shows it in `show`', async () => {
    const set = await slash('/imagine-admin', 'limits per_user=2', 'U0ADMIN');
    expect((await responded(set.id)).response_type).toBe('ephemeral');
    expect((await policy().settingsOf(`slack:${FAKE_TEAM_ID}`)).limits).toEqual({
      imagesPerUser: 2,
    });
    const shown = await slash('/imagine-admin', 'show', 'U0OWNER');
    const text = String((await responded(shown.id)).text);
    expect(text).toContain('per_user: 2 (workspace)');
    expect(text).toContain('(U0ADMIN): limits: per_user=2');
  });

  it('lets a user listed in SLACK_ADMIN_USERS moderate without asking users.info', async () => {
    const before = fake.callsOf('users.info').length;
    const { id } = await slash('/imagine-admin', 'words add kraken', 'U0HELPER');
    await responded(id);
    expect(fake.callsOf('users.info').length).toBe(before);
    expect((await policy().settingsOf(`slack:${FAKE_TEAM_ID}`)).blockedWords).toEqual(['kraken']);
  });

  it('/imagine-quota answers ephemerally with what is left; /imagine spends it', async () => {
    const first = await slash('/imagine-quota', '', 'U0ALICE');
    expect(JSON.parse(first.ackBody)).toMatchObject({ response_type: 'ephemeral' });
    expect(JSON.parse(first.ackBody).text).toContain('You have 2 of your 2 images per hour left.');
    await slash('/imagine', 'a fox in space --count 1', 'U0ALICE');
    await expect
      .poll(
        async () =>
          (await policy().quota({ platform: 'slack', scopeId: FAKE_TEAM_ID, userId: 'U0ALICE' }))
            .user.used,
      )
      .toBe(1);
    const after = await slash('/imagine-quota', '', 'U0ALICE');
    expect(JSON.parse(after.ackBody).text).toContain('You have 1 of your 2 images per hour left.');
  });

  it('channels allow restricts /imagine to that channel; a refused /imagine enqueues nothing', async () => {
    const { id } = await slash('/imagine-admin', 'channels allow <#C0ART|art>', 'U0ADMIN');
    await responded(id);
    const queued = app.relay!.relay.tracker.size;
    const ephemeralsBefore = fake.ephemerals.length + fake.responses.length;
    // One image: the quota here is 2 images per user.
    await slash('/imagine', 'a hare --count 1', 'U0OWNER', 'C0GENERAL');
    await fake.waitFor(() => fake.ephemerals.length + fake.responses.length > ephemeralsBefore);
    expect(app.relay!.relay.tracker.size).toBe(queued);
    await slash('/imagine', 'a hare --count 1', 'U0OWNER', 'C0ART');
    await expect.poll(() => app.relay!.relay.tracker.size).toBe(queued + 1);
  });
});
