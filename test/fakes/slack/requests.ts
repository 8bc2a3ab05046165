/**
 * Requests as Slack sends them to an app: form-encoded slash commands and interactivity
 * payloads, JSON events, each signed `v0=` HMAC-SHA256 over `v0:{ts}:{rawBody}`.
 */
import { createHmac } from 'node:crypto';
import { FAKE_TEAM_ID } from './fake-slack.ts';

/** A signing secret for tests. */
export const TEST_SIGNING_SECRET = 'fake-signing-secret-0123456789abcdef';

/** The headers Slack sends with a body signed at `timestamp` (seconds). */
export function slackSignatureHeaders(
  secret: string,
  body: string,
  timestamp = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const signature = createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex');
  return {
    'x-slack-request-timestamp': String(timestamp),
    'x-slack-signature': `v0=${signature}`,
  };
}

/** Options for {@link postToSlackApp}. */
export interface PostOptions {
  secret?: string;
  timestamp?: number;
  /** Replace the signature (bad-signature tests). */
  signature?: string;
  contentType?: string;
  /** More headers, e.g. an Events API retry's `x-slack-retry-num`. */
  headers?: Record<string, string>;
  /** Slack gives up on an app after 3 s: pass `AbortSignal.timeout(3000)` to model it. */
  signal?: AbortSignal;
}

/** POST a raw body to the app's events URL the way Slack does. */
export async function postToSlackApp(
  url: string,
  body: string,
  opts: PostOptions = {},
): Promise<Response> {
  const headers: Record<string, string> = {
    'content-type': opts.contentType ?? 'application/x-www-form-urlencoded',
    ...slackSignatureHeaders(opts.secret ?? TEST_SIGNING_SECRET, body, opts.timestamp),
  };
  if (opts.signature !== undefined) headers['x-slack-signature'] = opts.signature;
  Object.assign(headers, opts.headers);
  return fetch(url, {
    method: 'POST',
    headers,
    body,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
}

/** Text as Slack sends it in commands and message events: `&`, `<`, `>` as entities. */
export function slackEscaped(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * The form fields of a slash command. `text` is as the user typed it (escaped here as Slack
 * does); `sentText`, when given, is sent exactly as is — for text holding Slack's own markup,
 * such as the `<#C123|name>` a picked channel becomes.
 */
export function slashCommandForm(fields: {
  command?: string;
  text: string;
  sentText?: string;
  userId?: string;
  userName?: string;
  channelId?: string;
  responseUrl: string;
  triggerId?: string;
}): string {
  return new URLSearchParams({
    token: 'deprecated-verification-token',
    team_id: FAKE_TEAM_ID,
    team_domain: 'fake',
    channel_id: fields.channelId ?? 'C0GENERAL',
    channel_name: 'general',
    user_id: fields.userId ?? 'U0ALICE',
    user_name: fields.userName ?? 'alice',
    command: fields.command ?? '/imagine',
    text: fields.sentText ?? slackEscaped(fields.text),
    api_app_id: 'A0IMAGINE',
    is_enterprise_install: 'false',
    response_url: fields.responseUrl,
    trigger_id: fields.triggerId ?? '123.456.abc',
  }).toString();
}

/** A `block_actions` payload for a click on `button` of `message`, form-encoded. */
export function blockActionForm(fields: {
  button: { action_id: string; value?: string; block_id?: string };
  message: { ts: string; channel: string; threadTs?: string | undefined; blocks?: unknown[] };
  userId?: string;
  responseUrl: string;
}): string {
  const { button, message } = fields;
  const payload = {
    type: 'block_actions',
    user: {
      id: fields.userId ?? 'U0ALICE',
      username: 'alice',
      name: 'alice',
      team_id: FAKE_TEAM_ID,
    },
    api_app_id: 'A0IMAGINE',
    token: 'deprecated-verification-token',
    container: {
      type: 'message',
      message_ts: message.ts,
      channel_id: message.channel,
      is_ephemeral: false,
      ...(message.threadTs ? { thread_ts: message.threadTs } : {}),
    },
    trigger_id: '123.456.def',
    team: { id: FAKE_TEAM_ID, domain: 'fake' },
    is_enterprise_install: false,
    channel: { id: message.channel, name: 'general' },
    message: {
      type: 'message',
      ts: message.ts,
      text: '',
      blocks: message.blocks ?? [],
      ...(message.threadTs ? { thread_ts: message.threadTs } : {}),
    },
    response_url: fields.responseUrl,
    actions: [
      {
        type: 'button',
        action_id: button.action_id,
        block_id: button.block_id ?? 'actions',
        text: { type: 'plain_text', text: button.action_id },
        ...(button.value === undefined ? {} : { value: button.value }),
        action_ts: String(Date.now() / 1000),
      },
    ],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** Every button in a message's blocks. */
export function buttonsOf(blocks: unknown[]): Array<{ action_id: string; value?: string }> {
  const out: Array<{ action_id: string; value?: string }> = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) for (const n of node) walk(n);
    else if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (o.type === 'button') out.push(o as unknown as { action_id: string; value?: string });
      for (const v of Object.values(o)) walk(v);
    }
  };
  walk(blocks);
  return out;
}

/** All text in blocks, joined (for assertions on what a user reads). */
export function textOf(blocks: unknown[]): string {
  const out: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) for (const n of node) walk(n);
    else if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (typeof o.text === 'string') out.push(o.text);
      for (const [k, v] of Object.entries(o)) if (k !== 'text' || typeof v !== 'string') walk(v);
    }
  };
  walk(blocks);
  return out.join('\n');
}

/** An Events API body as Slack sends it (JSON), with a given or fresh `event_id`. */
export function eventCallbackBody(event: Record<string, unknown>, eventId?: string): string {
  return JSON.stringify({
    type: 'event_callback',
    token: 'deprecated-verification-token',
    team_id: FAKE_TEAM_ID,
    api_app_id: 'A0IMAGINE',
    event,
    event_id: eventId ?? `Ev${Math.random().toString(36).slice(2)}`,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [{ team_id: FAKE_TEAM_ID, user_id: 'UBOT0FAKE', is_bot: true }],
  });
}

/** The headers of Slack's `n`th repeat of an event it thinks was not answered in time. */
export function eventRetryHeaders(n: number, reason = 'http_timeout'): Record<string, string> {
  return { 'x-slack-retry-num': String(n), 'x-slack-retry-reason': reason };
}
