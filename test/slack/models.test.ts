import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { requestFromText } from '../../bot/slack/request-text.ts';
import type { Job } from '../../contracts/job.ts';
import type { FakeA1111 } from '../fakes/a1111.ts';
import { postToSlackApp, slashCommandForm } from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { type ModelBoxes, startModelBoxes } from '../helpers/model-boxes.ts';
import { FakeSlack, slackHttpEnv } from './helpers.ts';

describe('Slack /imagine --model, restricted per workspace by /imagine-admin (fake Slack, two A1111 fakes)', () => {
  let fake: FakeSlack;
  let boxes: ModelBoxes;
  let flux: FakeA1111;
  let sdxl: FakeA1111;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const txt2img = (box: FakeA1111) => boxes.txt2img(box);

  beforeAll(async () => {
    fake = await FakeSlack.start({ users: [{ id: 'U0ADMIN', name: 'ada', is_admin: true }] });
    boxes = await startModelBoxes('slack-models');
    ({ flux, sdxl } = boxes);
    app = await startTestImagine({ ...slackHttpEnv(fake), ...boxes.env });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
    await boxes?.close();
  });

  async function slash(command: string, text: string, userId = 'U0ADMIN') {
    const id = `${command.slice(1)}-${Math.random().toString(36).slice(2)}`;
    const res = await postToSlackApp(
      `${app.url}/slack/events`,
      slashCommandForm({
        command,
        text,
        sentText: text,
        userId,
        channelId: 'C0GENERAL',
        responseUrl: fake.responseUrl(id),
      }),
    );
    expect(res.status).toBe(200);
    return { id, ack: await res.text() };
  }
  const said = (id: string) =>
    fake.waitFor(() => fake.responses.find((r) => r.id === id)?.body.text as string | undefined);

  it('reads --model from the text (also --model=name)', () => {
    expect(requestFromText('a fox --model sdxl-base --ar 16:9')).toEqual({
      prompt: 'a fox',
      model: 'sdxl-base',
      aspect: '16:9',
    });
    expect(requestFromText('a fox --model=sd-turbo')).toMatchObject({ model: 'sd-turbo' });
  });

  it('the chosen model reaches the job and the backend offering it', async () => {
    const queued = vi.spyOn(app.relay!.relay.tracker, 'registerQueued');
    await slash('/imagine', 'a red fox --model sd-turbo');
    await expect.poll(() => txt2img(sdxl).length, { timeout: 20_000 }).toBe(1);
    expect(txt2img(sdxl)[0]!.body).toMatchObject({
      override_settings: { sd_model_checkpoint: 'sd-turbo' },
    });
    expect(txt2img(flux)).toHaveLength(0);
    const job = queued.mock.calls.map(([j]) => j as Job).find((j) => j.prompt === 'a red fox');
    expect(job?.model).toBe('sd-turbo');
  });

  it('after an admin restricts the workspace, a disallowed model is refused privately with the list, and no job is made', async () => {
    const set = await slash('/imagine-admin', 'set models=sdxl-base,sd-turbo');
    expect(await said(set.id)).toContain('models=sdxl-base,sd-turbo');
    const before = app.relay!.relay.tracker.size;
    const { id } = await slash('/imagine', 'a blue hare --model flux1-schnell');
    const refused = await fake.waitFor(
      () =>
        fake.ephemerals.find((e) => e.text.includes('flux1-schnell'))?.text ??
        (fake.responses.find((r) => r.id === id)?.body.text as string | undefined),
    );
    expect(refused).toContain(
      'model flux1-schnell is not allowed here; choose one of sdxl-base, sd-turbo',
    );
    expect(app.relay!.relay.tracker.size).toBe(before);
    expect(txt2img(flux)).toHaveLength(0);
  });

  it('without --model the workspace’s first allowed model is used (the offered default is not allowed)', async () => {
    const queued = vi.spyOn(app.relay!.relay.tracker, 'registerQueued');
    await slash('/imagine', 'a green owl');
    await expect
      .poll(() => queued.mock.calls.map(([j]) => j as Job).find((j) => j.prompt === 'a green owl'))
      .toMatchObject({ model: 'sdxl-base' });
    await expect
      .poll(
        () =>
          txt2img(sdxl).filter(
            (s) =>
              (s.body as { override_settings?: { sd_model_checkpoint?: string } }).override_settings
                ?.sd_model_checkpoint === 'sdxl-base',
          ).length,
        { timeout: 20_000 },
      )
      .toBe(1);
    expect(txt2img(flux)).toHaveLength(0);
  });

  it('a bad --model is refused at once with what was wrong', async () => {
    const { ack, id } = await slash('/imagine', 'a cat --model');
    const text = ack ? ack : await said(id);
    expect(text).toContain('--model needs a value');
  });
});
