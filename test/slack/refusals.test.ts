import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJobSpec } from '../../bot/slack/blocks.ts';
import { ImagineError } from '../../contracts/errors.ts';
import type { AdmissionPolicy } from '../../submit/submit.ts';
import type { GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import {
  blockActionForm,
  buttonsOf,
  postToSlackApp,
  slashCommandForm,
  textOf,
} from '../fakes/slack/requests.ts';
import { FakeSlack, resultCard, startWithSlack } from './helpers.ts';

/** Refuses prompts containing "refuse" as a rate limit; admits the rest. */
const admission: AdmissionPolicy = {
  async admit(ctx) {
    if (ctx.prompt.includes('refuse'))
      throw new ImagineError('RATE_LIMITED', 'limit reached', { retryAfterSeconds: 120 });
    return { confirm: () => {}, cancel: async () => {} };
  },
  finished: () => {},
};

/** The demo generator that fails while `failing` is set. */
class SwitchableGenerator implements Generator {
  readonly name = 'demo';
  failing = true;
  readonly seen: GenerateRequest[] = [];
  private readonly demo = new DemoGenerator();
  async generate(req: GenerateRequest, opts: { signal: AbortSignal }) {
    this.seen.push(req);
    if (this.failing) throw new ImagineError('GENERATION_FAILED', 'the model crashed');
    return this.demo.generate(req, opts);
  }
}

describe('Slack refusals and failures are told to the user, ephemerally', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startWithSlack>>;
  const generator = new SwitchableGenerator();
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await startWithSlack(
      fake,
      { admission, generator },
      { MODELS: 'flux1-schnell, sdxl-base' },
    );
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  const responsesTo = (id: string) => fake.responses.filter((r) => r.id === id);

  it('an unknown option is answered in the ack itself, to the user only', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({ text: 'a fox --colour red', responseUrl: fake.responseUrl('opt') }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { response_type: string; text: string };
    expect(body.response_type).toBe('ephemeral');
    expect(body.text).toContain('--colour');
    expect(fake.callsOf('chat.postMessage')).toEqual([]);
  });

  it('an invalid prompt goes back through response_url and never gets a status message', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({ text: 'x'.repeat(1001), responseUrl: fake.responseUrl('long') }),
    );
    expect(res.status).toBe(200);
    const [reply] = await fake.waitFor(() => responsesTo('long').length > 0 && responsesTo('long'));
    expect(reply!.body).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    expect(String(reply!.body.text)).toContain('1000');
    expect(fake.callsOf('chat.postMessage')).toEqual([]);
  });

  it('a refusal deletes the status message, enqueues nothing and says when to come back', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({ text: 'please refuse me', responseUrl: fake.responseUrl('refused') }),
    );
    expect(res.status).toBe(200);
    const [reply] = await fake.waitFor(
      () => responsesTo('refused').length > 0 && responsesTo('refused'),
    );
    expect(reply!.body.response_type).toBe('ephemeral');
    expect(String(reply!.body.text)).toContain('in 2 minutes');
    const posted = fake.callsOf('chat.postMessage');
    expect(posted).toHaveLength(1);
    const deleted = fake.callsOf('chat.delete');
    expect(deleted).toHaveLength(1);
    expect(fake.messages.filter((m) => !m.deleted)).toEqual([]);
    expect(app.relay!.relay.tracker.queuedCount).toBe(0);
  });

  /** The live status message in `channel` that turned into a failure card (it has Retry). */
  const failedCardIn = (channel: string) =>
    fake.waitFor(() =>
      fake.messages.find(
        (m) =>
          m.channel === channel &&
          !m.deleted &&
          buttonsOf(m.blocks).some((b) => b.action_id === 'imagine_retry'),
      ),
    );

  it('a failed job shows the error and Retry; Retry re-runs it (same seed, count and model) in the same message', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({
        text: 'a lighthouse --seed 7 --count 3 --model sdxl-base',
        responseUrl: fake.responseUrl('fails'),
        channelId: 'C0ART',
      }),
    );
    expect(res.status).toBe(200);
    const failed = await failedCardIn('C0ART');
    expect(textOf(failed.blocks)).toContain('GENERATION_FAILED');
    const [told] = await fake.waitFor(
      () => responsesTo('fails').length > 0 && responsesTo('fails'),
    );
    expect(told!.body.response_type).toBe('ephemeral');
    expect(String(told!.body.text)).toContain('Retry');
    const retry = buttonsOf(failed.blocks).find((b) => b.action_id === 'imagine_retry')!;
    expect(decodeJobSpec(retry.value)).toMatchObject({
      prompt: 'a lighthouse',
      seed: 7,
      count: 3,
      model: 'sdxl-base',
    });

    generator.failing = false;
    const seenBefore = generator.seen.length;
    const filesBefore = fake.files.size;
    const click = await postToSlackApp(
      app.eventsUrl,
      blockActionForm({
        button: retry,
        message: { ts: failed.ts, channel: failed.channel },
        responseUrl: fake.responseUrl('retry'),
      }),
    );
    expect(click.status).toBe(200);
    const card = await resultCard(fake, failed.ts);
    expect(textOf(card.blocks)).toContain('seeds 7–9');
    expect(fake.files.size).toBe(filesBefore + 3);
    expect(generator.seen.slice(seenBefore)).toMatchObject([
      { seeds: [7, 8, 9], model: 'sdxl-base' },
    ]);
    // Retry reused the failed message: no second status message in the channel.
    expect(fake.messages.filter((m) => m.channel === 'C0ART' && !m.files)).toHaveLength(1);
  });
  it('an upload Slack refuses leaves no "Generating…" behind: the card shows the error and Retry', async () => {
    generator.failing = false;
    fake.failNext('files.completeUploadExternal', 'restricted_action');
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({
        text: 'a paper crane',
        responseUrl: fake.responseUrl('nofiles'),
        channelId: 'C0NOFILES',
      }),
    );
    expect(res.status).toBe(200);
    const failed = await failedCardIn('C0NOFILES');
    expect(textOf(failed.blocks)).toContain('restricted_action');
    const [told] = await fake.waitFor(
      () => responsesTo('nofiles').length > 0 && responsesTo('nofiles'),
    );
    expect(String(told!.body.text)).toContain('Retry');
  });
});
