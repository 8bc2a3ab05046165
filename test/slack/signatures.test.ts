import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  postToSlackApp,
  slackSignatureHeaders,
  slashCommandForm,
  TEST_SIGNING_SECRET,
} from '../fakes/slack/requests.ts';
import { FakeSlack, startWithSlack } from './helpers.ts';

describe('POST /slack/events verifies Slack signatures', () => {
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

  const command = () => slashCommandForm({ text: 'a fox', responseUrl: fake.responseUrl() });
  const codeOf = async (res: Response) =>
    ((await res.json()) as { error: { code: string } }).error.code;

  it('401 BAD_SIGNATURE when signed with another secret', async () => {
    const res = await postToSlackApp(app.eventsUrl, command(), { secret: 'not-the-secret' });
    expect(res.status).toBe(401);
    expect(await codeOf(res)).toBe('BAD_SIGNATURE');
  });

  it('401 BAD_SIGNATURE when the body was changed after signing', async () => {
    const body = command();
    const headers = slackSignatureHeaders(TEST_SIGNING_SECRET, body);
    const res = await fetch(app.eventsUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: body.replace('a+fox', 'a+cat'),
    });
    expect(res.status).toBe(401);
    expect(await codeOf(res)).toBe('BAD_SIGNATURE');
  });

  it('401 STALE_SIGNATURE when correctly signed more than 5 minutes ago', async () => {
    const timestamp = Math.floor(Date.now() / 1000) - 6 * 60;
    const res = await postToSlackApp(app.eventsUrl, command(), { timestamp });
    expect(res.status).toBe(401);
    expect(await codeOf(res)).toBe('STALE_SIGNATURE');
  });

  it('401 STALE_SIGNATURE when stamped more than 5 minutes in the future', async () => {
    const timestamp = Math.floor(Date.now() / 1000) + 6 * 60;
    const res = await postToSlackApp(app.eventsUrl, command(), { timestamp });
    expect(res.status).toBe(401);
    expect(await codeOf(res)).toBe('STALE_SIGNATURE');
  });

  it('401 MISSING_SIGNATURE without the headers', async () => {
    const res = await fetch(app.eventsUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: command(),
    });
    expect(res.status).toBe(401);
    expect(await codeOf(res)).toBe('MISSING_SIGNATURE');
  });

  it('a rejected request reaches no listener: nothing posted to Slack', async () => {
    expect(fake.callsOf('chat.postMessage')).toEqual([]);
    expect(fake.responses).toEqual([]);
  });

  it('answers the Events API url_verification challenge when signed', async () => {
    const body = JSON.stringify({ type: 'url_verification', challenge: 'abc123', token: 'x' });
    const res = await postToSlackApp(app.eventsUrl, body, { contentType: 'application/json' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ challenge: 'abc123' });
    const forged = await postToSlackApp(app.eventsUrl, body, {
      contentType: 'application/json',
      signature: 'v0=00',
    });
    expect(forged.status).toBe(401);
  });
});
