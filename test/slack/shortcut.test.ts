/**
 * The "Imagine from this image" message shortcut through the whole pipeline against the fake:
 * the dialog opens prefilled, and its job starts from the message's file, which the worker
 * fetches with the bot token; the shortcut passes the admission policy like /imagine.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_TEAM_ID } from '../fakes/slack/fake-slack.ts';
import { postToSlackApp } from '../fakes/slack/requests.ts';
import {
  CountingAdmission,
  FakeSlack,
  inputEnv,
  RecordingGenerator,
  resultCard,
  startWithSlack,
  statusMessages,
} from './helpers.ts';

describe('Slack message shortcut: Imagine from this image', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startWithSlack>>;
  const generator = new RecordingGenerator();
  const admission = new CountingAdmission();
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await startWithSlack(fake, { generator, admission }, inputEnv(fake));
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  it('“Imagine from this image” on a user’s message: the dialog’s job starts from that file', async () => {
    // Blue on the left, orange on the right: the picture is recognisable after any fit.
    const half = (r: number, g: number, b: number) =>
      sharp({ create: { width: 320, height: 480, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer();
    const photo = await sharp({
      create: { width: 640, height: 480, channels: 3, background: { r: 10, g: 120, b: 200 } },
    })
      .composite([{ input: await half(240, 140, 20), left: 320, top: 0 }])
      .jpeg()
      .toBuffer();
    const file = fake.addUserFile({
      bytes: photo,
      filename: 'harbour.jpg',
      mimetype: 'image/jpeg',
      width: 640,
      height: 480,
      channel: 'C0PHOTOS',
    });
    const shortcut = {
      type: 'message_action',
      callback_id: 'imagine_from_image',
      trigger_id: '1.2.shortcut',
      team: { id: FAKE_TEAM_ID, domain: 'fake' },
      user: { id: 'U0CAROL', username: 'carol', name: 'carol', team_id: FAKE_TEAM_ID },
      channel: { id: 'C0PHOTOS', name: 'photos' },
      message_ts: '1700000100.000100',
      message: {
        type: 'message',
        user: 'U0DAN',
        ts: '1700000100.000100',
        text: 'our harbour at dusk',
        files: [
          {
            id: file.id,
            name: 'harbour.jpg',
            mimetype: 'image/jpeg',
            original_w: 640,
            original_h: 480,
          },
        ],
      },
      response_url: fake.responseUrl(),
      api_app_id: 'A0IMAGINE',
      token: 'x',
    };
    const res = await postToSlackApp(
      app.eventsUrl,
      new URLSearchParams({ payload: JSON.stringify(shortcut) }).toString(),
    );
    expect(res.status).toBe(200);
    const opened = await fake.waitFor(() =>
      fake.openedViews.find((v) => v.triggerId === '1.2.shortcut'),
    );
    const view = opened.view as {
      callback_id: string;
      private_metadata: string;
      blocks: unknown[];
    };
    expect(JSON.stringify(view.blocks)).toContain('our harbour at dusk');
    const submission = {
      type: 'view_submission',
      team: { id: FAKE_TEAM_ID, domain: 'fake' },
      user: { id: 'U0CAROL', username: 'carol', name: 'carol', team_id: FAKE_TEAM_ID },
      api_app_id: 'A0IMAGINE',
      token: 'x',
      trigger_id: '1.2.3',
      view: {
        id: 'V9',
        type: 'modal',
        callback_id: view.callback_id,
        private_metadata: view.private_metadata,
        state: {
          values: {
            prompt: {
              prompt_input: { type: 'plain_text_input', value: 'the harbour as a watercolour' },
            },
            strength: {
              strength_input: { type: 'static_select', selected_option: { value: 'subtle' } },
            },
          },
        },
      },
    };
    const submit = await postToSlackApp(
      app.eventsUrl,
      new URLSearchParams({ payload: JSON.stringify(submission) }).toString(),
    );
    expect(submit.status).toBe(200);
    const status = await fake.waitFor(() =>
      statusMessages(fake).find(
        (m) => m.channel === 'C0PHOTOS' && m.threadTs === '1700000100.000100',
      ),
    );
    await resultCard(fake, status.ts);
    const call = generator.calls.find((c) => c.task === 'vary')!;
    expect(call).toMatchObject({ task: 'vary', strength: 0.35 });
    // The worker's input fetcher normalises the JPEG: a PNG cover-fitted to the vary's size,
    // which keeps the photo's 4:3. Its left edge is still the blue, its right edge the orange.
    expect(call.input).toMatchObject({ format: 'png', width: call.width, height: call.height });
    expect(call.width / call.height).toBeCloseTo(640 / 480, 1);
    const edge = async (left: number) => {
      // stats() reads the whole input, so the strip is cut out first.
      const strip = await sharp(call.inputBytes!)
        .extract({ left, top: 0, width: 16, height: call.height })
        .png()
        .toBuffer();
      const { channels } = await sharp(strip).stats();
      return channels.slice(0, 3).map((c) => Math.round(c.mean));
    };
    const near = (got: number[], want: number[]) =>
      got.every((v, i) => Math.abs(v - want[i]!) <= 12);
    expect(near(await edge(0), [10, 120, 200])).toBe(true);
    expect(near(await edge(call.width - 16), [240, 140, 20])).toBe(true);
    expect(fake.downloads).toEqual([{ fileId: file.id, authorized: true }]);
    expect(admission.seen.map((c) => c.prompt)).toEqual(['the harbour as a watercolour']);
  });

  it('a message without an image file is told so, and nothing opens', async () => {
    const shortcut = {
      type: 'message_action',
      callback_id: 'imagine_from_image',
      trigger_id: '1.2.nofile',
      team: { id: FAKE_TEAM_ID, domain: 'fake' },
      user: { id: 'U0CAROL', username: 'carol', name: 'carol', team_id: FAKE_TEAM_ID },
      channel: { id: 'C0PHOTOS', name: 'photos' },
      message: { type: 'message', user: 'U0DAN', ts: '1700000200.000100', text: 'no picture' },
      response_url: fake.responseUrl('nofile'),
    };
    const res = await postToSlackApp(
      app.eventsUrl,
      new URLSearchParams({ payload: JSON.stringify(shortcut) }).toString(),
    );
    expect(res.status).toBe(200);
    const told = await fake.waitFor(() => fake.responses.find((r) => r.id === 'nofile'));
    expect(String(told.body.text)).toContain('no PNG, JPEG or WebP image');
    expect(fake.openedViews.find((v) => v.triggerId === '1.2.nofile')).toBeUndefined();
  });
});

describe('the fake serves url_private as Slack does', () => {
  it('without the bot token: a redirect to sign-in; with it: the bytes', async () => {
    const fake = await FakeSlack.start();
    try {
      const file = fake.addUserFile({
        bytes: Buffer.from('png-bytes'),
        filename: 'a.png',
        mimetype: 'image/png',
      });
      const url = fake.urlPrivate(file);
      const anonymous = await fetch(url, { redirect: 'manual' });
      expect(anonymous.status).toBe(302);
      const followed = await fetch(url);
      expect(followed.headers.get('content-type')).toContain('text/html');
      const wrong = await fetch(url, {
        headers: { authorization: 'Bearer xoxb-wrong' },
        redirect: 'manual',
      });
      expect(wrong.status).toBe(302);
      const ok = await fetch(url, { headers: { authorization: `Bearer ${fake.botToken}` } });
      expect(ok.status).toBe(200);
      expect(Buffer.from(await ok.arrayBuffer()).toString()).toBe('png-bytes');
    } finally {
      await fake.stop();
    }
  });
});
