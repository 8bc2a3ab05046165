/**
 * Every endpoint, fed malformed, oversized and hostile input — validly signed where a signature
 * is needed, so the handlers behind the signature check are reached — answers with a status
 * below 500 and keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discordSigner } from './fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from './fakes/discord/server.ts';
import { FakeSlack } from './fakes/slack/fake-slack.ts';
import { postToSlackApp, TEST_SIGNING_SECRET } from './fakes/slack/requests.ts';
import { startTestImagine } from './helpers/imagine.ts';
import { sendRawPush } from './helpers/push.ts';

const JSON_BODIES = [
  '',
  'null',
  '[]',
  '"text"',
  '12',
  '{',
  '{}',
  '{"prompt": null}',
  '{"prompt": {"$gt": ""}}',
  '{"prompt": ["a"]}',
  '{"__proto__": {"admin": true}, "prompt": "x"}',
  '{"constructor": {"prototype": {"x": 1}}}',
  `{"prompt": "${'x'.repeat(60_000)}"}`,
  `${'['.repeat(5000)}${']'.repeat(5000)}`,
  '{"prompt": "\\ud800"}',
  '{"type": 2}',
  '{"type": 2, "data": {"name": "imagine", "options": [{"name": "prompt", "value": 5}]}}',
  '{"type": 2, "data": {"name": "nope"}, "token": "t", "application_id": "1"}',
  '{"type": 3, "data": {"custom_id": "zzz"}, "token": "t", "application_id": "1"}',
  '{"type": 3, "data": {"custom_id": "reroll|||||||"}, "token": "t", "application_id": "1", "message": {}}',
  '{"type": 99}',
];

const FORM_BODIES = [
  '',
  'a=b',
  'command=%2Fimagine',
  'command=%2Fimagine&text=',
  'command=%2Fnope&text=x&user_id=U1&channel_id=C1',
  `command=%2Fimagine&text=${'x'.repeat(5000)}&user_id=U1&channel_id=C1&team_id=T1`,
  'payload=',
  'payload=%7B',
  'payload=%7B%7D',
  'payload=%7B%22type%22%3A%22block_actions%22%7D',
  'payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22imagine_reroll%22%2C%22value%22%3A%22garbage%22%7D%5D%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%7D',
  'payload=%5B%5D',
  '%%%',
];

/** Signed Slack bodies that parse but are not what Slack sends: each must be a 4xx, not a crash. */
const SLACK_MALFORMED: Array<{ body: string; json?: boolean }> = [
  { body: `payload=${encodeURIComponent('{"type":"shortcut"}')}` },
  {
    body: `payload=${encodeURIComponent('{"type":"shortcut","callback_id":"x","trigger_id":"t"}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"message_action","callback_id":"imagine_from_image","trigger_id":"t","user":{"id":"U1"}}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"message_action","callback_id":"imagine_from_image","trigger_id":"t","user":{"id":"U1"},"channel":{"id":"C1"},"message":null}')}`,
  },
  { body: `payload=${encodeURIComponent('{"type":"view_submission"}')}` },
  {
    body: `payload=${encodeURIComponent('{"type":"view_submission","user":{"id":"U1"},"view":null}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"view_submission","user":{"id":"U1"},"view":{"callback_id":"imagine_dialog","state":{"values":null}}}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"block_actions","user":{"id":"U1"},"actions":null}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"block_actions","user":{"id":"U1"},"actions":[null]}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"block_actions","user":null,"actions":[{"action_id":"imagine_reroll","type":"button"}]}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"imagine_reroll","type":"button","value":"v1|x|y|z|p"}],"container":null}')}`,
  },
  {
    body: `payload=${encodeURIComponent('{"type":"block_actions","user":{"id":["U1"]},"actions":[{"action_id":"imagine_retry","type":"button"}]}')}`,
  },
  { body: `payload=${encodeURIComponent('{"type":"interactive_message"}')}` },
  { body: `payload=${encodeURIComponent('{"type":42}')}` },
  { body: 'command=%2Fimagine&text=a+fox' },
  { body: 'command=%2Fimagine&text=a+fox&user_id=U1&channel_id=C1' },
  { body: 'command=imagine&text=a+fox&user_id=U1&channel_id=C1&team_id=T1' },
  { body: 'command=%2Fimagine-admin&text=set+x%3D1&user_id=U1&channel_id=C1&team_id=T1' },
  { body: 'command=%2Fimagine-quota&user_id=U1&channel_id=C1&team_id=T1' },
  { body: '{"type":"event_callback","event":null}', json: true },
  { body: '{"type":"event_callback","event_id":"Ev1","event":null}', json: true },
  { body: '{"type":"event_callback","event_id":"Ev2","event":{}}', json: true },
  { body: '{"type":"event_callback","event_id":"Ev3","event":{"type":"message"}}', json: true },
  {
    body: '{"type":"event_callback","event_id":"Ev4","event":{"type":"message","channel_type":"im","channel":null,"user":"U1","text":"a fox"}}',
    json: true,
  },
  {
    body: '{"type":"event_callback","event_id":"Ev5","event":{"type":"app_home_opened","user":null,"tab":"home"}}',
    json: true,
  },
  { body: '{"type":"event_callback","event_id":["Ev6"],"event":{"type":"message"}}', json: true },
  { body: '{"type":"url_verification"}', json: true },
  { body: '{"type":"url_verification","challenge":{"a":1}}', json: true },
  { body: '{"type":"app_rate_limited","minute_rate_limited":1}', json: true },
  { body: '{"type":"block_actions"}', json: true },
  { body: '{"command":null}', json: true },
  { body: '{"ssl_check":"1"}', json: true },
];

describe('hostile input never gets a 5xx', () => {
  let fakeDiscord: FakeDiscord;
  let fakeSlack: FakeSlack;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const signer = discordSigner();

  beforeAll(async () => {
    fakeDiscord = await startFakeDiscord();
    fakeSlack = await FakeSlack.start();
    app = await startTestImagine(
      {
        DISCORD_PUBLIC_KEY: signer.publicKeyHex,
        DISCORD_API_URL: fakeDiscord.apiUrl,
        SLACK_BOT_TOKEN: fakeSlack.botToken,
        SLACK_SIGNING_SECRET: TEST_SIGNING_SECRET,
        SLACK_API_URL: fakeSlack.apiUrl,
      },
      { role: 'relay' },
    );
  });
  afterAll(async () => {
    await app?.stop();
    await fakeSlack?.stop();
    await fakeDiscord?.close();
  });

  const expectHandled = async (label: string, res: Response) => {
    const text = await res.text();
    expect(res.status, `${label} → ${res.status} ${text.slice(0, 200)}`).toBeLessThan(500);
  };

  it('POST /enqueue', async () => {
    for (const body of JSON_BODIES) {
      const res = await fetch(`${app.url}/enqueue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      await expectHandled(`enqueue ${body.slice(0, 40)}`, res);
    }
  });

  it('POST /push (signed)', async () => {
    for (const body of JSON_BODIES) {
      await expectHandled(
        `push json ${body.slice(0, 40)}`,
        await sendRawPush(app.url, Buffer.from(body), 'application/json'),
      );
      await expectHandled(
        `push multipart ${body.slice(0, 40)}`,
        await sendRawPush(app.url, Buffer.from(body), 'multipart/form-data; boundary=zz'),
      );
    }
    await expectHandled(
      'push no boundary',
      await sendRawPush(app.url, Buffer.from('--x'), 'multipart/form-data'),
    );
  });

  it('POST /discord/interactions (signed)', async () => {
    for (const body of JSON_BODIES) {
      const res = await fetch(`${app.url}/discord/interactions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...signer.headers(body) },
        body,
      });
      await expectHandled(`discord ${body.slice(0, 60)}`, res);
    }
  });

  it('POST /slack/events (signed)', async () => {
    for (const body of FORM_BODIES) {
      await expectHandled(
        `slack form ${body.slice(0, 60)}`,
        await postToSlackApp(`${app.url}/slack/events`, body),
      );
    }
    for (const body of JSON_BODIES) {
      await expectHandled(
        `slack json ${body.slice(0, 60)}`,
        await postToSlackApp(`${app.url}/slack/events`, body, { contentType: 'application/json' }),
      );
    }
  });

  it('POST /slack/events: signed but malformed Slack payloads are refused with a 4xx', async () => {
    for (const { body, json } of SLACK_MALFORMED) {
      await expectHandled(
        `slack malformed ${body.slice(0, 80)}`,
        await postToSlackApp(
          `${app.url}/slack/events`,
          body,
          json ? { contentType: 'application/json' } : {},
        ),
      );
    }
    // The edge says what is wrong, in the shared error shape.
    const res = await postToSlackApp(
      `${app.url}/slack/events`,
      '{"type":"event_callback","event_id":"Ev7","event":null}',
      { contentType: 'application/json' },
    );
    expect(res.status).toBe(400);
    const error = ((await res.json()) as { error: { code: string; message: string } }).error;
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.message).toContain('event');
  });

  it('GET routes with odd paths and queries', async () => {
    for (const path of [
      '/jobs/%00',
      '/jobs/..%2F..%2Fetc%2Fpasswd',
      `/jobs/${'a'.repeat(5000)}`,
      '/jobs/AAAAAAAAAAAAAAAAAAAAAAAA/image?x=1',
      '/ws?jobId=a&jobId=b',
      '/%E0%A4%A',
      '/assets/../../package.json',
      '/index.html?%%',
    ]) {
      await expectHandled(path, await fetch(`${app.url}${path}`));
    }
  });

  it('is still healthy afterwards', async () => {
    const res = await fetch(`${app.url}/healthz`);
    expect(res.status).toBe(200);
  });
});
