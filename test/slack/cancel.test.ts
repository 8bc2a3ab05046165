/**
 * Progress and Cancel on Slack (issue 11), through the fake Slack and the whole pipeline (a
 * generator that reports step 1 of 4 and then waits): the status message shows the percentage
 * and a Cancel button; someone else's click is refused ephemerally; the requester's (or a
 * workspace admin's) stops the job, and the status message says Cancelled as its one final
 * message; a click after the image answers that the job had already finished.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { FakeMessage } from '../fakes/slack/fake-slack.ts';
import {
  blockActionForm,
  buttonsOf,
  postToSlackApp,
  slashCommandForm,
  textOf,
} from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { SteppedGenerator } from '../helpers/progress-generator.ts';
import { FakeSlack, slackHttpEnv, statusMessages } from './helpers.ts';

let fake: FakeSlack;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
const generator = new SteppedGenerator();

beforeAll(async () => {
  fake = await FakeSlack.start({
    users: [
      { id: 'U0ALICE', name: 'alice' },
      { id: 'U0BOB', name: 'bob' },
      { id: 'U0MOD', name: 'mod', is_admin: true },
    ],
  });
  app = await startTestImagine({ ...slackHttpEnv(fake), CANCEL_POLL_MS: '200' }, { generator });
});
afterAll(async () => {
  generator.release();
  await app?.stop();
  await fake.stop();
});

/** Start a job held at step 1 of 4; resolve once its status shows 25 % and Cancel. */
async function heldJob(prompt: string, id: string) {
  generator.hold();
  const res = await postToSlackApp(
    `${app!.url}/slack/events`,
    slashCommandForm({ text: prompt, responseUrl: fake.responseUrl(id) }),
  );
  expect(res.status).toBe(200);
  const status = await fake.waitFor(() =>
    statusMessages(fake).find(
      (m) =>
        m.text.includes(prompt) &&
        textOf(m.blocks).includes('Generating… 25%') &&
        buttonsOf(m.blocks).some((b) => b.action_id === 'imagine_cancel'),
    ),
  );
  const blocks = structuredClone(status.blocks);
  const button = buttonsOf(blocks).find((b) => b.action_id === 'imagine_cancel')!;
  return { status, blocks, button };
}

async function click(
  status: FakeMessage,
  blocks: unknown[],
  button: { action_id: string; value?: string },
  userId: string,
  id: string,
) {
  const res = await postToSlackApp(
    `${app!.url}/slack/events`,
    blockActionForm({
      button,
      message: { ts: status.ts, channel: status.channel, blocks },
      userId,
      responseUrl: fake.responseUrl(id),
    }),
  );
  expect(res.status).toBe(200);
}

const said = (id: string) => fake.waitFor(() => fake.responses.find((r) => r.id === id));
const cancelledCard = (ts: string) =>
  fake.waitFor(() => {
    const m = fake.message(ts);
    return m && textOf(m.blocks).includes('Cancelled.') ? m : undefined;
  });

describe('Slack: progress and Cancel', () => {
  it('shows the percentage with Cancel; someone else is refused; the requester cancels, once', async () => {
    const { status, blocks, button } = await heldJob('a slow fox', 's1');
    expect(button.value).toMatch(/^[A-Za-z0-9_-]{22,}$/);

    await click(status, blocks, button, 'U0BOB', 'b1');
    const refused = await said('b1');
    expect(refused.body).toMatchObject({ response_type: 'ephemeral' });
    expect(JSON.stringify(refused.body)).toContain('Only the person who asked');
    expect(textOf(fake.message(status.ts)!.blocks)).not.toContain('Cancelled');

    await click(status, blocks, button, 'U0ALICE', 'a1');
    const card = await cancelledCard(status.ts);
    expect(card.text).toContain('was cancelled');
    expect(buttonsOf(card.blocks).map((b) => b.action_id)).toEqual(['imagine_retry']);
    await vi.waitFor(() => expect(generator.aborted).toBeGreaterThanOrEqual(1), {
      timeout: 10_000,
    });
    generator.release();
    await new Promise((r) => setTimeout(r, 500));
    // One final message: no image, no "didn't make it" notice, the card still says Cancelled.
    expect([...fake.files.values()].filter((f) => f.threadTs === status.ts)).toEqual([]);
    expect(fake.responses.filter((r) => r.id === 's1' || r.id === 'a1')).toEqual([]);
    expect(textOf(fake.message(status.ts)!.blocks)).toContain('Cancelled.');
  });

  it('a workspace admin may cancel someone else’s job', async () => {
    const { status, blocks, button } = await heldJob('a slow owl', 's2');
    await click(status, blocks, button, 'U0MOD', 'm1');
    await cancelledCard(status.ts);
    await vi.waitFor(() => expect(generator.aborted).toBeGreaterThanOrEqual(2), {
      timeout: 10_000,
    });
    generator.release();
  });

  it('a Cancel after the image answers ephemerally that the job had already finished', async () => {
    const { status, blocks, button } = await heldJob('a quick hare', 's3');
    generator.release();
    await fake.waitFor(() => [...fake.files.values()].find((f) => f.threadTs === status.ts));
    await click(status, blocks, button, 'U0ALICE', 'l1');
    const late = await said('l1');
    expect(JSON.stringify(late.body)).toContain('already finished');
    expect(textOf(fake.message(status.ts)!.blocks)).not.toContain('Cancelled');
  });
});
