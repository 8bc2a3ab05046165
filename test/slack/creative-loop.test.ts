/**
 * The creative loop on Slack, through the whole pipeline against the fake: a job of four is one
 * multi-file upload in the thread with U1–U4 / V1–V4 / Re-roll on the card; U2 and V3, and
 * Upscale and Vary on a single image, work after the whole process restarts (the worker
 * fetches the file from the thread with the bot token); and each click passes the admission
 * policy (limits and moderation) on its own.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeButton } from '../../bot/slack/creative.ts';
import { ImagineError } from '../../contracts/errors.ts';
import {
  blockActionForm,
  buttonsOf,
  postToSlackApp,
  slashCommandForm,
  textOf,
} from '../fakes/slack/requests.ts';
import {
  CountingAdmission,
  decoded,
  FakeSlack,
  inputEnv,
  RecordingGenerator,
  resultCard,
  startWithSlack,
  statusMessages,
} from './helpers.ts';

describe('Slack creative loop: a grid of four, U/V after a restart, limits on each', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startWithSlack>>;
  const generator = new RecordingGenerator();
  const admission = new CountingAdmission();
  const start = () => startWithSlack(fake, { generator, admission }, inputEnv(fake));
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await start();
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  let cardTs: string;
  let gridTs: string;

  it('a job of 4 reaches Slack as one multi-file upload in the thread; the status becomes the card', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({ text: 'a koi pond --count 4 --seed 10', responseUrl: fake.responseUrl() }),
    );
    expect(res.status).toBe(200);
    const status = await fake.waitFor(() => statusMessages(fake)[0]);
    const card = await resultCard(fake, status.ts);
    // One share of all four files, in the status message's thread.
    const completes = fake.callsOf('files.completeUploadExternal');
    expect(completes).toHaveLength(1);
    const listed = JSON.parse(String(completes[0]!.args.files)) as Array<{ id: string }>;
    expect(listed).toHaveLength(4);
    expect(completes[0]!.args.thread_ts).toBe(status.ts);
    const shared = fake.messages.filter((m) => m.files);
    expect(shared).toHaveLength(1);
    expect(shared[0]!.files!.map((f) => f.id)).toEqual(listed.map((f) => f.id));
    for (const [i, f] of shared[0]!.files!.entries()) {
      expect(f.altText).toContain('a koi pond');
      expect(f.altText).toContain(`${i + 1} of 4`);
      expect((await sharp(f.bytes!).metadata()).format).toBe('png');
    }
    // One generator call for all four, one seed each.
    expect(generator.calls.at(-1)).toMatchObject({ task: 'generate', seeds: [10, 11, 12, 13] });
    // The card: four previews and the buttons.
    const previews = card.blocks.filter((b) => (b as { type: string }).type === 'image');
    expect(previews).toHaveLength(4);
    expect(buttonsOf(card.blocks).map((b) => b.action_id)).toEqual([
      'imagine_upscale_1',
      'imagine_upscale_2',
      'imagine_upscale_3',
      'imagine_upscale_4',
      'imagine_vary_strong_1',
      'imagine_vary_strong_2',
      'imagine_vary_strong_3',
      'imagine_vary_strong_4',
      'imagine_reroll_job',
    ]);
    gridTs = status.ts;
  });

  it('U2 and V3 work after the whole process restarts: the worker fetches the thread’s file', async () => {
    const card = fake.message(gridTs)!;
    const files = fake.messages.find((m) => m.files && m.threadTs === gridTs)!.files!;
    const u2 = buttonsOf(card.blocks).find((b) => b.action_id === 'imagine_upscale_2')!;
    const v3 = buttonsOf(card.blocks).find((b) => b.action_id === 'imagine_vary_strong_3')!;
    expect(decodeButton(u2.value)!.meta.f).toBe(files[1]!.id);
    await app.stop();
    app = await start();

    const before = new Set(statusMessages(fake).map((m) => m.ts));
    const click = (button: { action_id: string; value?: string }) =>
      postToSlackApp(
        app.eventsUrl,
        blockActionForm({
          button,
          message: { ts: card.ts, channel: card.channel, blocks: card.blocks },
          userId: 'U0BOB',
          responseUrl: fake.responseUrl(),
        }),
      );
    expect((await click(u2)).status).toBe(200);
    const upStatus = await fake.waitFor(() =>
      statusMessages(fake).find((m) => !before.has(m.ts) && m.threadTs === gridTs),
    );
    const upCard = await resultCard(fake, upStatus.ts);
    const upCall = generator.calls.find((c) => c.task === 'upscale')!;
    expect(textOf(upCard.blocks)).toContain('<@U0BOB> upscaled: *a koi pond*');
    // The worker's input fetcher hands the generator a PNG cover-fitted to the size the task
    // starts from (an upscale: half its output, here the file's own 1024×1024): U2's pixels.
    const second = await decoded(files[1]!.bytes!);
    expect(upCall.input).toEqual({ ...second, format: 'png', width: 1024, height: 1024 });
    expect(second.pixels).not.toBe((await decoded(files[0]!.bytes!)).pixels);
    expect([upCall.width, upCall.height]).toEqual([2048, 2048]);
    // The download carried the bot token (the fake redirects to sign-in without it).
    expect(fake.downloads.filter((d) => d.fileId === files[1]!.id)).toEqual([
      { fileId: files[1]!.id, authorized: true },
    ]);
    // An upscale offers Vary (Subtle/Strong) and, while 2× stays within 4096, Upscale again.
    expect(buttonsOf(upCard.blocks).map((b) => b.action_id)).toEqual([
      'imagine_vary_subtle',
      'imagine_vary_strong',
      'imagine_upscale',
    ]);
    const upFile = fake.messages.find(
      (m) => m.files && m.threadTs === gridTs && m !== fake.messages.find((x) => x.files),
    )!;
    expect((await sharp(upFile.files![0]!.bytes!).metadata()).width).toBe(2048);

    const seen = new Set(statusMessages(fake).map((m) => m.ts));
    expect((await click(v3)).status).toBe(200);
    const varyStatus = await fake.waitFor(() =>
      statusMessages(fake).find((m) => !seen.has(m.ts) && m.threadTs === gridTs),
    );
    await resultCard(fake, varyStatus.ts);
    const varyCall = generator.calls.find((c) => c.task === 'vary')!;
    // A vary starts from its output size (1024×1024, the file's own): V3's pixels, as PNG.
    const third = await decoded(files[2]!.bytes!);
    expect(varyCall.input).toEqual({ ...third, format: 'png', width: 1024, height: 1024 });
    expect(third.pixels).not.toBe(second.pixels);
    expect(varyCall.strength).toBe(0.75);
    expect(varyCall.seeds).toHaveLength(4);
  });

  it('Upscale and Vary on a single image work after the whole process restarts', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({
        text: 'a koi pond --count 1 --seed 10',
        channelId: 'C0SINGLE',
        responseUrl: fake.responseUrl(),
      }),
    );
    expect(res.status).toBe(200);
    const status = await fake.waitFor(() =>
      statusMessages(fake).find((m) => m.channel === 'C0SINGLE'),
    );
    const card = await resultCard(fake, status.ts);
    const file = fake.messages.find((m) => m.files && m.threadTs === status.ts)!.files![0]!;
    expect(file.altText).toBe('a koi pond');
    const buttons = buttonsOf(card.blocks);
    expect(buttons.map((b) => b.action_id)).toEqual([
      'imagine_vary_subtle',
      'imagine_vary_strong',
      'imagine_upscale',
      'imagine_reroll_job',
    ]);
    const upscale = buttons.find((b) => b.action_id === 'imagine_upscale')!;
    const vary = buttons.find((b) => b.action_id === 'imagine_vary_strong')!;
    expect(decodeButton(upscale.value)!.meta.f).toBe(file.id);
    await app.stop();
    app = await start();

    const click = (button: { action_id: string; value?: string }) =>
      postToSlackApp(
        app.eventsUrl,
        blockActionForm({
          button,
          message: { ts: card.ts, channel: card.channel, blocks: card.blocks },
          userId: 'U0BOB',
          responseUrl: fake.responseUrl(),
        }),
      );
    const before = new Set(statusMessages(fake).map((m) => m.ts));
    expect((await click(upscale)).status).toBe(200);
    const upStatus = await fake.waitFor(() =>
      statusMessages(fake).find((m) => !before.has(m.ts) && m.threadTs === status.ts),
    );
    const upCard = await resultCard(fake, upStatus.ts);
    const { pixels } = await decoded(file.bytes!);
    const upCall = generator.calls.find((c) => c.task === 'upscale' && c.input?.pixels === pixels)!;
    // The worker fetched the file from the thread, with the bot token.
    expect([upCall.width, upCall.height]).toEqual([2048, 2048]);
    expect(upCall.input).toMatchObject({ format: 'png', width: 1024, height: 1024 });
    expect(fake.downloads.filter((d) => d.fileId === file.id)).toEqual([
      { fileId: file.id, authorized: true },
    ]);
    // An upscale offers Vary (Subtle/Strong) and, while 2× stays within 4096, Upscale again.
    expect(buttonsOf(upCard.blocks).map((b) => b.action_id)).toEqual([
      'imagine_vary_subtle',
      'imagine_vary_strong',
      'imagine_upscale',
    ]);
    expect(textOf(upCard.blocks)).toContain('<@U0BOB> upscaled: *a koi pond*');

    const seen = new Set(statusMessages(fake).map((m) => m.ts));
    expect((await click(vary)).status).toBe(200);
    const varyStatus = await fake.waitFor(() =>
      statusMessages(fake).find((m) => !seen.has(m.ts) && m.threadTs === status.ts),
    );
    await resultCard(fake, varyStatus.ts);
    const varyCall = generator.calls.find((c) => c.task === 'vary' && c.input?.pixels === pixels)!;
    expect(varyCall).toMatchObject({
      strength: 0.75,
      input: { format: 'png', width: 1024, height: 1024 },
    });
    cardTs = status.ts;
  });

  it('limits count each: every click passes admission, and a refusal starts nothing', async () => {
    const prompts = admission.seen.map((c) => c.prompt);
    // Two /imagine, U2, V3, Upscale and Vary: six admissions, each its own.
    expect(prompts).toEqual(Array(6).fill('a koi pond'));
    const card = fake.message(cardTs)!;
    const u1 = buttonsOf(card.blocks).find((b) => b.action_id === 'imagine_upscale')!;
    const { meta } = decodeButton(u1.value)!;
    const refused = { action_id: u1.action_id, value: `v2|${JSON.stringify(meta)}|refuse this` };
    const jobsBefore = generator.calls.length;
    const messagesBefore = statusMessages(fake).length;
    const res = await postToSlackApp(
      app.eventsUrl,
      blockActionForm({
        button: refused,
        message: { ts: card.ts, channel: card.channel, blocks: card.blocks },
        responseUrl: fake.responseUrl('refused-u1'),
      }),
    );
    expect(res.status).toBe(200);
    const told = await fake.waitFor(() => fake.responses.find((r) => r.id === 'refused-u1'));
    expect(String(told.body.text)).toContain('image limit reached');
    expect(statusMessages(fake)).toHaveLength(messagesBefore);
    expect(generator.calls).toHaveLength(jobsBefore);
  });

  it('a vary that fails has no Retry (its value would re-run a plain generate without the image)', async () => {
    const card = fake.message(cardTs)!;
    const vary = buttonsOf(card.blocks).find((b) => b.action_id === 'imagine_vary_subtle')!;
    generator.fail = (req) =>
      req.task === 'vary' ? new ImagineError('GENERATION_FAILED', 'the backend broke') : undefined;
    const seen = new Set(statusMessages(fake).map((m) => m.ts));
    const calls = generator.calls.length;
    const res = await postToSlackApp(
      app.eventsUrl,
      blockActionForm({
        button: vary,
        message: { ts: card.ts, channel: card.channel, blocks: card.blocks },
        userId: 'U0BOB',
        responseUrl: fake.responseUrl('failed-vary'),
      }),
    );
    expect(res.status).toBe(200);
    const failed = await fake.waitFor(() => {
      const m = statusMessages(fake).find((x) => !seen.has(x.ts) && x.threadTs === cardTs);
      return m && textOf(m.blocks).includes('image failed') ? m : undefined;
    });
    generator.fail = undefined;
    // The generator was asked for the vary (with its input), and it failed.
    expect(generator.calls.slice(calls).map((c) => [c.task, c.input?.format])).toEqual([
      ['vary', 'png'],
    ]);
    expect(buttonsOf(failed.blocks)).toEqual([]);
    expect(textOf(failed.blocks)).toContain('Press the button on the image again');
    expect(textOf(failed.blocks)).not.toContain('Press Retry');
  });
});
