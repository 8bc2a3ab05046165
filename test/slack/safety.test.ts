/**
 * Output safety on Slack, through the fake Slack Web API and the real classifier: alt text
 * (`alt_txt`) on every upload, a flagged image uploaded blurred, a blocked one not at all.
 */
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { postToSlackApp, slashCommandForm } from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { FakeSlack, slackHttpEnv, statusMessages } from './helpers.ts';

const classifier = createNsfwClassifier();
let fake: FakeSlack | undefined;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
afterEach(async () => {
  await app?.stop();
  await fake?.stop();
  app = undefined;
  fake = undefined;
});

async function imagine(env: Record<string, string>, text: string, id: string) {
  fake = await FakeSlack.start();
  app = await startTestImagine({ ...slackHttpEnv(fake), ...env }, { classifier });
  const res = await postToSlackApp(
    `${app.url}/slack/events`,
    slashCommandForm({ text, responseUrl: fake.responseUrl(id) }),
  );
  expect(res.status).toBe(200);
  return fake;
}

describe('Slack: output safety', () => {
  it('an image under the threshold is uploaded as made, with the prompt as alt_txt', async () => {
    const slack = await imagine({ SAFETY: 'block' }, 'a fox in space --seed 3 --count 1', 'c1');
    const file = await slack.waitFor(() => [...slack.files.values()].find((f) => f.channel));
    expect(file.altText).toBe('a fox in space');
    expect(file.filename).toBe('imagine-3.png');
    expect(file.initialComment).not.toContain('blurred');
  });

  it('spoiler: uploaded blurred (a different, smaller image) and the comment says why', async () => {
    const slack = await imagine(
      { SAFETY: 'spoiler', SAFETY_THRESHOLD: '0' },
      'a fox in space --seed 4 --count 1',
      'c2',
    );
    const file = await slack.waitFor(() => [...slack.files.values()].find((f) => f.channel));
    expect(file.filename).toBe('imagine-4-blurred.png');
    expect(file.altText).toBe('a fox in space');
    expect(file.initialComment).toContain("This workspace's safety setting flagged the image");
    const meta = await sharp(file.bytes!).metadata();
    expect(Math.max(meta.width ?? 0, meta.height ?? 0)).toBeLessThanOrEqual(512);
    // Blurred: almost no fine detail left (neighbouring pixels barely differ).
    const { data, info } = await sharp(file.bytes!)
      .greyscale()
      .raw()
      .toBuffer({ resolveWithObject: true });
    let jumps = 0;
    for (let i = 1; i < info.width; i++) jumps += Math.abs(data[i]! - data[i - 1]!);
    expect(jumps / info.width).toBeLessThan(2);
  });

  it('block: nothing uploaded; the status says the workspace’s safety setting blocked it', async () => {
    const slack = await imagine(
      { SAFETY: 'block', SAFETY_THRESHOLD: '0' },
      'a fox in space --seed 5',
      'c3',
    );
    await slack.waitFor(() =>
      statusMessages(slack).find((m) =>
        JSON.stringify(m.blocks ?? m.text).includes("workspace's safety setting blocked"),
      ),
    );
    expect([...slack.files.values()].filter((f) => f.channel)).toEqual([]);
  });
});
