import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeJobSpec } from '../../bot/slack/blocks.ts';
import { decodeButton } from '../../bot/slack/creative.ts';
import {
  blockActionForm,
  buttonsOf,
  postToSlackApp,
  slashCommandForm,
  textOf,
} from '../fakes/slack/requests.ts';
import { FakeSlack, resultCard, startWithSlack, statusMessages } from './helpers.ts';

describe('Slack /imagine end to end (HTTP mode, fake Slack, demo generator)', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startWithSlack>>;
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await startWithSlack(fake);
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  let cardTs: string;

  it('acks the slash command, posts a status, uploads the image into its thread and updates the status', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({
        text: 'a fox in space --ar 16:9 --seed 42 --count 1',
        responseUrl: fake.responseUrl('cmd1'),
      }),
    );
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');

    const file = await fake.waitFor(() => [...fake.files.values()].find((f) => f.channel));
    const status = statusMessages(fake)[0]!;
    expect(status.channel).toBe('C0GENERAL');
    expect(status.threadTs).toBeUndefined();
    // The image: uploaded from memory, decodes as the requested image, threaded under the status.
    const meta = await sharp(file.bytes!).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1344, 768]);
    expect(file.length).toBe(file.bytes!.length);
    expect(file.threadTs).toBe(status.ts);
    expect(file.initialComment).toContain('<@U0ALICE> a fox in space');
    expect(file.initialComment).toContain('seed 42');

    // The status message became the result card: prompt, facts, preview, buttons.
    const card = await resultCard(fake, status.ts);
    expect(card.updates).toBeGreaterThanOrEqual(2);
    const text = textOf(card.blocks);
    expect(text).toContain('<@U0ALICE> imagined: *a fox in space*');
    expect(text).toContain('seed 42 · 1344×768');
    expect(card.blocks).toContainEqual(
      expect.objectContaining({ type: 'image', slack_file: { id: file.id } }),
    );
    const buttons = buttonsOf(card.blocks);
    expect(buttons.map((b) => b.action_id)).toEqual([
      'imagine_vary_subtle',
      'imagine_vary_strong',
      'imagine_upscale',
      'imagine_reroll_job',
    ]);
    expect(decodeButton(buttons.at(-1)!.value)).toMatchObject({
      prompt: 'a fox in space',
      meta: { t: 'generate', n: 1, s: 42, w: 1344, h: 768 },
    });
    expect(decodeButton(buttons[0]!.value)!.meta.f).toBe(file.id);
    // Every update on the way said where the job was; the last one says it is done.
    const updates = fake.callsOf('chat.update').filter((c) => c.args.ts === status.ts);
    expect(updates.some((c) => /Queued|Generating/.test(String(c.args.text)))).toBe(true);
    expect(String(updates.at(-1)!.args.text)).toContain('imagined');
    // Nothing was said privately: no ephemeral, no response_url post.
    expect(fake.responses).toEqual([]);
    expect(fake.ephemerals).toEqual([]);
    cardTs = status.ts;
  });

  it('a prompt cannot ping the channel or plant a link: mrkdwn is escaped everywhere it is shown', async () => {
    const prompt = 'a fox <!channel> & <https://evil.test|free gift> 🦊';
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({ text: prompt, channelId: 'C0ESCAPE', responseUrl: fake.responseUrl() }),
    );
    expect(res.status).toBe(200);
    const file = await fake.waitFor(() =>
      [...fake.files.values()].find((f) => f.channel === 'C0ESCAPE' && f.initialComment),
    );
    const escaped = 'a fox &lt;!channel&gt; &amp; &lt;https://evil.test|free gift&gt; 🦊';
    expect(file.initialComment).toContain(escaped);
    expect(file.initialComment).not.toContain('<!channel>');
    const status = statusMessages(fake).find((m) => m.channel === 'C0ESCAPE')!;
    const card = await resultCard(fake, status.ts);
    expect(textOf(card.blocks)).toContain(escaped);
    expect(card.text).not.toContain('<!channel>');
    expect(decodeButton(buttonsOf(card.blocks)[0]!.value)!.prompt).toBe(prompt);
  });

  it('a click on Re-roll is answered by a fresh process (nothing kept in memory)', async () => {
    const card = fake.message(cardTs)!;
    const reroll = buttonsOf(card.blocks).find((b) => b.action_id === 'imagine_reroll_job')!;
    await app.stop();
    // A new relay and worker: new memory, same configuration.
    app = await startWithSlack(fake);

    const filesBefore = fake.files.size;
    const res = await postToSlackApp(
      app.eventsUrl,
      blockActionForm({
        button: reroll,
        message: { ts: card.ts, channel: card.channel, blocks: card.blocks },
        userId: 'U0BOB',
        responseUrl: fake.responseUrl('click1'),
      }),
    );
    expect(res.status).toBe(200);
    const file = await fake.waitFor(() =>
      fake.files.size > filesBefore ? [...fake.files.values()].at(-1) : undefined,
    );
    await fake.waitFor(() => file.channel !== undefined && file.bytes);
    // The new status went into the card's thread, in the clicker's name, and became a card.
    const rerollStatus = statusMessages(fake).find((m) => m.threadTs === cardTs)!;
    expect(rerollStatus).toBeDefined();
    const newCard = await resultCard(fake, rerollStatus.ts);
    expect(textOf(newCard.blocks)).toContain('<@U0BOB> imagined: *a fox in space*');
    expect(file.threadTs).toBe(cardTs);
    const again = buttonsOf(newCard.blocks).find((b) => b.action_id === 'imagine_reroll_job')!;
    const { meta, prompt } = decodeButton(again.value)!;
    expect(prompt).toBe('a fox in space');
    expect(meta).toMatchObject({ t: 'generate', n: 1, w: 1344, h: 768 });
    expect(meta.s).not.toBe(42);
    const size = await sharp(file.bytes!).metadata();
    expect([size.width, size.height]).toEqual([1344, 768]);
  });

  it('a card from before the creative loop: its Variations button (a v1 value) still asks for four new images of the same prompt, each with its own status', async () => {
    const card = fake.message(cardTs)!;
    const variations = {
      action_id: 'imagine_variations',
      value: encodeJobSpec({ prompt: 'a fox in space', seed: 42, width: 1344, height: 768 }),
    };
    const before = new Set(fake.messages.map((m) => m.ts));
    const res = await postToSlackApp(
      app.eventsUrl,
      blockActionForm({
        button: variations,
        message: { ts: card.ts, channel: card.channel },
        responseUrl: fake.responseUrl('click2'),
      }),
    );
    expect(res.status).toBe(200);
    const fresh = () => statusMessages(fake).filter((m) => !before.has(m.ts));
    await fake.waitFor(() => fresh().length === 4 && fresh());
    const cards = await Promise.all(fresh().map((m) => resultCard(fake, m.ts)));
    const seeds = cards.map(
      (c) =>
        decodeButton(buttonsOf(c.blocks).find((b) => b.action_id === 'imagine_reroll_job')!.value)!
          .meta.s,
    );
    expect(new Set(seeds).size).toBe(4);
    for (const c of cards) expect(c.threadTs).toBe(cardTs);
  });
});
