/**
 * "Show image" under an image output safety blurred on Slack, through the fake Slack (strict
 * about OAuth scopes) and the real classifier (a threshold of 0 flags every image): the original
 * goes to the clicker's DM with the app and nowhere else; without `im:write` Slack answers
 * `missing_scope` and the clicker is told what is missing; once the original left the relay's
 * memory the clicker is told so.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { manifestBotScopes } from '../fakes/slack/fake-slack.ts';
import {
  blockActionForm,
  buttonsOf,
  postToSlackApp,
  slashCommandForm,
} from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { decoded, FakeSlack, slackHttpEnv, statusMessages } from './helpers.ts';

const classifier = createNsfwClassifier();
let fake: FakeSlack | undefined;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
afterEach(async () => {
  await app?.stop();
  await fake?.stop();
  app = undefined;
  fake = undefined;
});

/** A spoiler job of one image; resolves with its result card and the "Show image" button on it. */
async function blurredJob(opts: { scopes?: string[] } = {}) {
  fake = await FakeSlack.start(opts.scopes ? { scopes: opts.scopes } : {});
  app = await startTestImagine(
    { ...slackHttpEnv(fake), SAFETY: 'spoiler', SAFETY_THRESHOLD: '0' },
    { classifier },
  );
  const slack = fake;
  await postToSlackApp(
    `${app.url}/slack/events`,
    slashCommandForm({
      text: 'a fox in space --seed 7 --count 1',
      responseUrl: slack.responseUrl('c1'),
    }),
  );
  const card = await slack.waitFor(() =>
    statusMessages(slack).find((m) =>
      buttonsOf(m.blocks).some((b) => b.action_id.startsWith('imagine_reveal')),
    ),
  );
  const button = buttonsOf(card.blocks).find((b) => b.action_id.startsWith('imagine_reveal'))!;
  return { slack, card, button };
}

async function click(
  card: { ts: string; channel: string; blocks: unknown[] },
  button: { action_id: string; value?: string },
  userId: string,
  id: string,
) {
  const res = await postToSlackApp(
    `${app!.url}/slack/events`,
    blockActionForm({ button, message: card, userId, responseUrl: fake!.responseUrl(id) }),
  );
  expect(res.status).toBe(200);
}

const answer = (slack: FakeSlack, id: string) =>
  slack.waitFor(() => slack.responses.find((r) => r.id === id));

describe('Slack: Show image under a blurred image', () => {
  it('sends the original to the clicker alone, in their DM with the app', async () => {
    const { slack, card, button } = await blurredJob();
    expect(button).toMatchObject({ action_id: 'imagine_reveal_1' });
    await click(card, button, 'U0BOB', 'r1');
    const told = await answer(slack, 'r1');
    expect(told.body).toMatchObject({ response_type: 'ephemeral' });
    expect(JSON.stringify(told.body)).toContain('Sent you the original in your direct messages');
    expect(slack.callsOf('conversations.open')[0]?.args).toMatchObject({ users: 'U0BOB' });
    const dm = slack.dmOf('U0BOB');
    const original = [...slack.files.values()].find((f) => f.channel === dm)!;
    expect(original.filename).toBe('imagine-7.png');
    const blurred = [...slack.files.values()].find((f) => f.channel === 'C0GENERAL')!;
    expect(blurred.filename).toBe('imagine-7-blurred.png');
    // The original: full size and not the blurred pixels.
    const [o, b] = await Promise.all([decoded(original.bytes!), decoded(blurred.bytes!)]);
    expect(o.width).toBe(1024);
    expect(o.pixels).not.toBe(b.pixels);
    // Nothing new in the channel: only the DM got a file.
    expect([...slack.files.values()].filter((f) => f.channel === 'C0GENERAL')).toHaveLength(1);
  });

  it('without im:write: Slack answers missing_scope and the clicker is told the scope is missing', async () => {
    const scopes = manifestBotScopes().filter((s) => s !== 'im:write');
    const { slack, card, button } = await blurredJob({ scopes });
    await click(card, button, 'U0BOB', 'r2');
    const told = await answer(slack, 'r2');
    expect(JSON.stringify(told.body)).toContain('im:write');
    expect(slack.callsOf('conversations.open')).toHaveLength(1);
    expect([...slack.files.values()].filter((f) => f.channel?.startsWith('D'))).toEqual([]);
  });

  it('once the original left the relay’s memory (a restart), the click says so and nothing is sent', async () => {
    const { slack, card, button } = await blurredJob();
    await app!.stop();
    app = await startTestImagine({ ...slackHttpEnv(slack), SAFETY: 'spoiler' }, { classifier });
    await click(card, button, 'U0BOB', 'r3');
    const told = await answer(slack, 'r3');
    expect(JSON.stringify(told.body)).toContain('no longer in memory');
    expect(slack.callsOf('conversations.open')).toEqual([]);
  });
});
