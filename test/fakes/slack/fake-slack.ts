/**
 * A local fake of the Slack Web API that `@slack/web-api` and Bolt run against unchanged
 * (`slackApiUrl: fake.apiUrl`). It keeps conversations in memory so tests can read what a user
 * would see: messages (with blocks), ephemerals, uploaded files and their bytes, response_url
 * posts, published Home views. It can answer 429 with `Retry-After` and fail any method once.
 * With `appToken`, `apps.connections.open` hands out a loopback Socket Mode WebSocket.
 *
 * As strict as Slack's docs, on a clock the test controls (`advance`):
 * - method tiers: more calls of a method in a minute than its tier allows get 429 with
 *   `Retry-After` (seconds until the window has room);
 * - `chat.postMessage` to a user id opens (or reuses) the DM and answers with its `D…` id;
 * - `files.getUploadURLExternal` reads the alt text from `alt_txt` only;
 * - an `image` block's `slack_file` must name an uploaded png/jpg/jpeg/gif, and block ids are
 *   unique in a message and new in each version of it (`invalid_blocks` otherwise);
 * - a response_url takes 5 posts within 30 minutes of being issued (404 `used_url` /
 *   `expired_url` after that);
 * - OAuth scopes: the bot token holds the scopes `bot/slack/manifest.yaml` asks for (or those a
 *   test names); a method whose scope it lacks answers `missing_scope` with `needed` and
 *   `provided`, and every answer carries `X-OAuth-Scopes`, as Slack's do.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';

/** A message as the fake stores it. */
export interface FakeMessage {
  channel: string;
  ts: string;
  text: string;
  blocks: unknown[];
  threadTs?: string;
  user: string;
  files?: FakeFile[];
  deleted?: boolean;
  /** How many times chat.update changed it. */
  updates: number;
}

/** An uploaded file. */
export interface FakeFile {
  id: string;
  filename: string;
  length: number;
  altText?: string;
  bytes?: Buffer;
  title?: string;
  channel?: string;
  threadTs?: string;
  initialComment?: string;
  permalink: string;
  mimetype?: string;
  width?: number;
  height?: number;
}

/** One recorded Web API call. */
export interface FakeCall {
  method: string;
  args: Record<string, unknown>;
  /** ms since epoch when the fake received it. */
  at: number;
  /** The status the fake answered with. */
  status: number;
}

/** A user known to `users.info`. */
export interface FakeUser {
  id: string;
  name: string;
  is_admin?: boolean;
  is_owner?: boolean;
}

/** Options of {@link FakeSlack}. */
export interface FakeSlackOptions {
  botToken?: string;
  appToken?: string;
  teamId?: string;
  users?: FakeUser[];
  /** Enforce method tiers (default true). */
  tiers?: boolean;
  /** The bot token's OAuth scopes (default: the manifest's bot scopes). */
  scopes?: readonly string[];
}

/** The bot scopes `bot/slack/manifest.yaml` asks for (what an install from it grants). */
export function manifestBotScopes(): string[] {
  const text = readFileSync(new URL('../../../bot/slack/manifest.yaml', import.meta.url), 'utf8');
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /^ {4}bot:\s*$/.test(l));
  const scopes: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^\s*#/.test(line) || line.trim() === '') continue;
    const item = /^ {6}- ([a-z:._]+)\s*$/.exec(line);
    if (!item) break;
    scopes.push(item[1]!);
  }
  return scopes;
}

/**
 * The scope each Web API method needs of a bot token (Slack's method reference). A method not
 * listed needs none here. `conversations.open` for a 1:1 DM needs `im:write` (a group DM
 * `mpim:write`).
 */
function scopeNeeded(method: string, args: Record<string, unknown>): string | undefined {
  switch (method) {
    case 'chat.postMessage':
    case 'chat.update':
    case 'chat.delete':
    case 'chat.postEphemeral':
      return 'chat:write';
    case 'files.getUploadURLExternal':
    case 'files.completeUploadExternal':
      return 'files:write';
    case 'files.info':
      return 'files:read';
    case 'users.info':
      return 'users:read';
    case 'conversations.join':
      return 'channels:join';
    case 'conversations.open':
      return String(args.users ?? '').includes(',') ? 'mpim:write' : 'im:write';
    default:
      return undefined;
  }
}

/**
 * Calls a minute per method, from Slack's method reference (Tier 3: 50, Tier 4: 100).
 * `chat.postMessage` is a special tier (about one a second per channel, bursts allowed) and
 * `auth.test` is not limited here.
 */
export const FAKE_METHOD_TIERS: Readonly<Record<string, number>> = {
  'chat.update': 50,
  'chat.delete': 50,
  'conversations.join': 50,
  'chat.postEphemeral': 100,
  'files.getUploadURLExternal': 100,
  'files.completeUploadExternal': 100,
  'files.info': 100,
  'users.info': 100,
  'views.open': 100,
  'views.publish': 100,
};

/** How long and how often Slack honours a response_url. */
export const RESPONSE_URL_LIFETIME_MS = 30 * 60 * 1000;
export const RESPONSE_URL_MAX_USES = 5;

/** File types an image block's slack_file preview accepts. */
const PREVIEW_TYPES = new Set(['png', 'jpg', 'jpeg', 'gif']);

/** Defaults for tests. */
export const FAKE_BOT_TOKEN = 'xoxb-fake-bot-token';
export const FAKE_APP_TOKEN = 'xapp-fake-app-token';
export const FAKE_TEAM_ID = 'T0FAKE';
export const FAKE_BOT_USER_ID = 'UBOT0FAKE';

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function json(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
}

/** Parse a Web API request body into arguments (form or JSON; JSON-looking values kept as strings). */
function parseArgs(body: Buffer, contentType: string): Record<string, unknown> {
  if (body.length === 0) return {};
  if (contentType.startsWith('application/json')) return JSON.parse(body.toString('utf8'));
  return Object.fromEntries(new URLSearchParams(body.toString('utf8')));
}

function jsonArg<T>(value: unknown, fallback: T): T {
  if (typeof value !== 'string') return (value as T) ?? fallback;
  try {
    return JSON.parse(value) as T;
  } catch {
    return fallback;
  }
}

/** Slack's own limits the fake enforces, so blocks Slack would refuse fail here too. */
function checkBlocks(blocks: unknown[]): string | undefined {
  if (blocks.length > 50) return 'invalid_blocks';
  const walk = (node: unknown): string | undefined => {
    if (Array.isArray(node)) {
      for (const n of node) {
        const bad = walk(n);
        if (bad) return bad;
      }
      return undefined;
    }
    if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (o.type === 'button') {
        if (typeof o.value === 'string' && o.value.length > 2000) return 'invalid_blocks';
        if (typeof o.action_id === 'string' && o.action_id.length > 255) return 'invalid_blocks';
      }
      if (o.type === 'mrkdwn' || o.type === 'plain_text') {
        if (typeof o.text === 'string' && o.text.length > 3000) return 'invalid_blocks';
      }
      for (const v of Object.values(o)) {
        const bad = walk(v);
        if (bad) return bad;
      }
    }
    return undefined;
  };
  return walk(blocks);
}

/** The fake Slack server. `await FakeSlack.start()`; `await fake.stop()`. */
export class FakeSlack extends EventEmitter {
  readonly botToken: string;
  readonly appToken: string;
  readonly teamId: string;
  readonly calls: FakeCall[] = [];
  readonly messages: FakeMessage[] = [];
  readonly ephemerals: Array<{ channel: string; user: string; text: string; blocks: unknown[] }> =
    [];
  readonly files = new Map<string, FakeFile>();
  /** Bodies POSTed to response URLs, by response URL id. */
  readonly responses: Array<{ id: string; body: Record<string, unknown> }> = [];
  /** `url_private` downloads: which file, and whether the bot token came with it. */
  readonly downloads: Array<{ fileId: string; authorized: boolean }> = [];
  /** Posts to response URLs the fake refused (used up or expired). */
  readonly refusedResponses: Array<{ id: string; error: string }> = [];
  readonly homeViews: Array<{ userId: string; view: Record<string, unknown> }> = [];
  readonly openedViews: Array<{ triggerId: string; view: Record<string, unknown> }> = [];
  readonly users = new Map<string, FakeUser>();
  /** Channels the bot joined with conversations.join. */
  readonly joined = new Set<string>();
  /** Socket Mode: acks received from the app, by envelope id. */
  private readonly socketAcks = new Map<string, (payload: unknown) => void>();
  private sockets = new Set<WebSocket>();
  private readonly rateLimits = new Map<string, number[]>();
  private readonly failures = new Map<
    string,
    Array<{ error: string; when: (args: Record<string, unknown>) => boolean }>
  >();
  private seq = 0;
  private clock = 1_700_000_000;
  /** Added to Date.now(): `advance(ms)` moves the fake's time. */
  private offsetMs = 0;
  private readonly enforceTiers: boolean;
  /** The bot token's scopes. */
  readonly scopes: Set<string>;
  /** When each method was called (fake time, ms), for the tiers. */
  private readonly methodCalls = new Map<string, number[]>();
  /** response_url ids: when issued, how often used. */
  private readonly responseUrls = new Map<string, { issuedAt: number; uses: number }>();
  /** DM channel id by user id. */
  readonly dms = new Map<string, string>();
  /** Every block id each message has carried, by ts. */
  private readonly blockIdsSeen = new Map<string, Set<string>>();
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private port = 0;

  private constructor(opts: FakeSlackOptions) {
    super();
    this.botToken = opts.botToken ?? FAKE_BOT_TOKEN;
    this.appToken = opts.appToken ?? FAKE_APP_TOKEN;
    this.teamId = opts.teamId ?? FAKE_TEAM_ID;
    this.enforceTiers = opts.tiers ?? true;
    this.scopes = new Set(opts.scopes ?? manifestBotScopes());
    for (const u of opts.users ?? []) this.users.set(u.id, u);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => json(res, 500, { ok: false, error: String(err) }));
    });
    this.wss = new WebSocketServer({ server: this.server, path: '/socket' });
    this.wss.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('message', (data) => {
        const msg = JSON.parse(String(data)) as { envelope_id?: string; payload?: unknown };
        if (msg.envelope_id) this.socketAcks.get(msg.envelope_id)?.(msg.payload);
      });
      socket.send(JSON.stringify({ type: 'hello', num_connections: 1 }));
      this.emit('socket');
    });
  }

  /** Start on a loopback port. */
  static async start(opts: FakeSlackOptions = {}): Promise<FakeSlack> {
    const fake = new FakeSlack(opts);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  /** Base URL for `slackApiUrl` / `SLACK_API_URL`. */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api/`;
  }

  /** A fresh response_url the fake records posts to, issued now (fake time). */
  responseUrl(id = `r${++this.seq}`): string {
    if (!this.responseUrls.has(id)) this.responseUrls.set(id, { issuedAt: this.now(), uses: 0 });
    return `http://127.0.0.1:${this.port}/response/${id}`;
  }

  /** The fake's time (ms): the wall clock plus whatever `advance` added. */
  now(): number {
    return Date.now() + this.offsetMs;
  }

  /** Move the fake's clock forward (response_url lifetimes, method tier windows). */
  advance(ms: number): void {
    this.offsetMs += ms;
  }

  /** The DM channel the fake opened for `userId`. */
  dmOf(userId: string): string {
    let channel = this.dms.get(userId);
    if (!channel) {
      channel = `D${userId.replace(/^[UW]/, '')}`;
      this.dms.set(userId, channel);
    }
    return channel;
  }

  /** How many 429s the fake answered for `method` (tiers and rateLimitNext together). */
  rateLimited(method: string): number {
    return this.callsOf(method).filter((c) => c.status === 429).length;
  }

  /** Answer the next `count` calls of `method` with 429 and `Retry-After: seconds`. */
  rateLimitNext(method: string, seconds: number, count = 1): void {
    this.rateLimits.set(method, [
      ...(this.rateLimits.get(method) ?? []),
      ...Array(count).fill(seconds),
    ]);
  }

  /** Answer the next call of `method` (that `when` accepts) with `{ ok: false, error }`. */
  failNext(
    method: string,
    error: string,
    when: (args: Record<string, unknown>) => boolean = () => true,
  ): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), { error, when }]);
  }

  /** Calls of one method. */
  callsOf(method: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** A live (not deleted) message by ts. */
  message(ts: string): FakeMessage | undefined {
    return this.messages.find((m) => m.ts === ts && !m.deleted);
  }

  /** Resolve once `check` returns a value (re-checked on every request the fake handles). */
  async waitFor<T>(check: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
    const first = check();
    if (first) return first;
    return new Promise<T>((resolve, reject) => {
      const onChange = () => {
        const value = check();
        if (value) {
          clearTimeout(timer);
          this.off('change', onChange);
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        this.off('change', onChange);
        reject(new Error(`fake Slack: condition not met in ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('change', onChange);
    });
  }

  /** Socket Mode: send an envelope to the connected app and resolve with its ack payload. */
  async sendEnvelope(
    type: 'slash_commands' | 'interactive' | 'events_api',
    payload: unknown,
  ): Promise<unknown> {
    const socket = [...this.sockets][0];
    if (!socket) throw new Error('no Socket Mode connection');
    const envelopeId = `env-${++this.seq}`;
    const acked = new Promise<unknown>((resolve) => this.socketAcks.set(envelopeId, resolve));
    socket.send(
      JSON.stringify({
        envelope_id: envelopeId,
        type,
        payload,
        accepts_response_payload: type !== 'events_api',
        retry_attempt: 0,
        retry_reason: '',
      }),
    );
    return acked;
  }

  /** Resolves once an app holds a Socket Mode connection. */
  async socketConnected(): Promise<void> {
    if (this.sockets.size > 0) return;
    await new Promise<void>((resolve) => this.once('socket', () => resolve()));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Seconds to wait when `method` is over its tier now; otherwise counts the call. */
  private tierWait(method: string): number | undefined {
    const limit = FAKE_METHOD_TIERS[method];
    if (!this.enforceTiers || limit === undefined) return undefined;
    const now = this.now();
    const times = (this.methodCalls.get(method) ?? []).filter((t) => t > now - 60_000);
    this.methodCalls.set(method, times);
    if (times.length >= limit) return Math.max(1, Math.ceil((times[0]! + 60_000 - now) / 1000));
    times.push(now);
    return undefined;
  }

  /** Slack's checks of image blocks and block ids; `previous` are the message's earlier ids. */
  private checkMessageBlocks(blocks: unknown[], ts?: string): string | undefined {
    const bad = checkBlocks(blocks);
    if (bad) return bad;
    const ids = new Set<string>();
    const seen = ts ? this.blockIdsSeen.get(ts) : undefined;
    for (const block of blocks as Array<Record<string, unknown>>) {
      if (typeof block?.block_id === 'string') {
        if (ids.has(block.block_id) || seen?.has(block.block_id)) return 'invalid_blocks';
        ids.add(block.block_id);
      }
      if (block?.type === 'image' && block.slack_file) {
        const ref = block.slack_file as { id?: string };
        const file = ref.id ? this.files.get(ref.id) : undefined;
        const type = file?.filename.split('.').pop()?.toLowerCase() ?? '';
        if (!file || !PREVIEW_TYPES.has(type)) return 'invalid_blocks';
      }
    }
    return undefined;
  }

  private rememberBlockIds(ts: string, blocks: unknown[]): void {
    const seen = this.blockIdsSeen.get(ts) ?? new Set<string>();
    for (const block of blocks as Array<Record<string, unknown>>)
      if (typeof block?.block_id === 'string') seen.add(block.block_id);
    this.blockIdsSeen.set(ts, seen);
  }

  private nextFileId(): string {
    return `F0${String(++this.seq).padStart(8, '0')}`;
  }

  /** A file a user shared (not uploaded by the bot): for shortcuts on a user's message. */
  addUserFile(opts: {
    bytes: Buffer;
    filename: string;
    mimetype: string;
    width?: number;
    height?: number;
    channel?: string;
  }): FakeFile {
    const id = this.nextFileId();
    const file: FakeFile = {
      id,
      filename: opts.filename,
      length: opts.bytes.length,
      bytes: opts.bytes,
      mimetype: opts.mimetype,
      ...(opts.width ? { width: opts.width } : {}),
      ...(opts.height ? { height: opts.height } : {}),
      ...(opts.channel ? { channel: opts.channel } : {}),
      permalink: `https://fake.slack.test/files/${id}`,
    };
    this.files.set(id, file);
    return file;
  }

  /** Where a file's bytes are served (`url_private`): a bot token is needed, as on Slack. */
  urlPrivate(file: FakeFile): string {
    return `http://127.0.0.1:${this.port}/files-pri/${this.teamId}-${file.id}/${encodeURIComponent(file.filename)}`;
  }

  private nextTs(): string {
    this.clock += 1;
    return `${this.clock}.${String(++this.seq).padStart(6, '0')}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const body = await readBody(req);
    try {
      if (url.pathname.startsWith('/upload/')) return await this.upload(url, req, body, res);
      if (url.pathname.startsWith('/files-pri/')) return this.download(url, req, res);
      if (url.pathname === '/login') {
        // Where Slack sends a file request without a valid token: a sign-in page, not the file.
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!DOCTYPE html><html><body>Sign in to Slack</body></html>');
        return;
      }
      if (url.pathname.startsWith('/response/')) {
        const id = url.pathname.slice('/response/'.length);
        const issued = this.responseUrls.get(id) ?? { issuedAt: this.now(), uses: 0 };
        this.responseUrls.set(id, issued);
        const refusal =
          this.now() - issued.issuedAt >= RESPONSE_URL_LIFETIME_MS
            ? 'expired_url'
            : issued.uses >= RESPONSE_URL_MAX_USES
              ? 'used_url'
              : undefined;
        if (refusal) {
          this.refusedResponses.push({ id, error: refusal });
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end(refusal);
          return;
        }
        issued.uses += 1;
        this.responses.push({ id, body: JSON.parse(body.toString('utf8')) });
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
        return;
      }
      if (!url.pathname.startsWith('/api/')) return json(res, 404, { ok: false });
      const method = url.pathname.slice('/api/'.length);
      // Slack takes arguments in the query string (GET) or the body (POST), as here.
      const args = {
        ...Object.fromEntries(url.searchParams),
        ...parseArgs(body, String(req.headers['content-type'] ?? '')),
      };
      const call: FakeCall = { method, args, at: Date.now(), status: 200 };
      this.calls.push(call);
      const tierWait = this.tierWait(method);
      if (tierWait !== undefined) {
        call.status = 429;
        return json(
          res,
          429,
          { ok: false, error: 'ratelimited' },
          { 'retry-after': String(tierWait) },
        );
      }
      const limited = this.rateLimits.get(method);
      if (limited && limited.length > 0) {
        const seconds = limited.shift()!;
        call.status = 429;
        return json(
          res,
          429,
          { ok: false, error: 'ratelimited' },
          { 'retry-after': String(seconds) },
        );
      }
      const auth = String(req.headers.authorization ?? '');
      const token = auth.startsWith('Bearer ') ? auth.slice(7) : (args.token as string | undefined);
      const expected = method === 'apps.connections.open' ? this.appToken : this.botToken;
      if (token !== expected) return json(res, 200, { ok: false, error: 'invalid_auth' });
      const provided = [...this.scopes].join(',');
      const scoped = { 'x-oauth-scopes': provided };
      const needed = method === 'apps.connections.open' ? undefined : scopeNeeded(method, args);
      if (needed && !this.scopes.has(needed))
        return json(res, 200, { ok: false, error: 'missing_scope', needed, provided }, scoped);
      const pending = this.failures.get(method) ?? [];
      const index = pending.findIndex((f) => f.when(args));
      if (index >= 0) {
        const [failure] = pending.splice(index, 1);
        return json(res, 200, { ok: false, error: failure!.error }, scoped);
      }
      return json(res, 200, this.api(method, args), scoped);
    } finally {
      this.emit('change');
    }
  }

  private api(method: string, args: Record<string, unknown>): Record<string, unknown> {
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://fake.slack.test/',
          team: 'Fake',
          user: 'imagine',
          team_id: this.teamId,
          user_id: FAKE_BOT_USER_ID,
          bot_id: 'BFAKE',
        };
      case 'apps.connections.open':
        return { ok: true, url: `ws://127.0.0.1:${this.port}/socket` };
      case 'chat.postMessage': {
        let channel = String(args.channel ?? '');
        if (!channel) return { ok: false, error: 'channel_not_found' };
        // A user id as the channel is the app's DM with that user: Slack answers with its D… id.
        if (/^[UW]/.test(channel)) channel = this.dmOf(channel);
        const blocks = jsonArg<unknown[]>(args.blocks, []);
        if (!args.text && blocks.length === 0) return { ok: false, error: 'no_text' };
        const bad = this.checkMessageBlocks(blocks);
        if (bad) return { ok: false, error: bad };
        const message: FakeMessage = {
          channel,
          ts: this.nextTs(),
          text: String(args.text ?? ''),
          blocks,
          user: FAKE_BOT_USER_ID,
          updates: 0,
          ...(args.thread_ts ? { threadTs: String(args.thread_ts) } : {}),
        };
        this.messages.push(message);
        this.rememberBlockIds(message.ts, blocks);
        return { ok: true, channel, ts: message.ts, message: { ...message } };
      }
      case 'chat.update': {
        const message = this.messages.find(
          (m) => m.ts === args.ts && m.channel === args.channel && !m.deleted,
        );
        if (!message) return { ok: false, error: 'message_not_found' };
        const blocks = jsonArg<unknown[] | undefined>(args.blocks, undefined);
        if (blocks) {
          const bad = this.checkMessageBlocks(blocks, message.ts);
          if (bad) return { ok: false, error: bad };
          message.blocks = blocks;
          this.rememberBlockIds(message.ts, blocks);
        }
        if (args.text !== undefined) message.text = String(args.text);
        message.updates += 1;
        return { ok: true, channel: message.channel, ts: message.ts, text: message.text };
      }
      case 'chat.delete': {
        const message = this.messages.find((m) => m.ts === args.ts && m.channel === args.channel);
        if (!message || message.deleted) return { ok: false, error: 'message_not_found' };
        message.deleted = true;
        return { ok: true, channel: message.channel, ts: message.ts };
      }
      case 'chat.postEphemeral': {
        this.ephemerals.push({
          channel: String(args.channel),
          user: String(args.user),
          text: String(args.text ?? ''),
          blocks: jsonArg<unknown[]>(args.blocks, []),
        });
        return { ok: true, message_ts: this.nextTs() };
      }
      case 'files.getUploadURLExternal': {
        const id = this.nextFileId();
        const length = Number(args.length);
        if (!args.filename || !Number.isInteger(length) || length <= 0)
          return { ok: false, error: 'invalid_arguments' };
        this.files.set(id, {
          id,
          filename: String(args.filename),
          length,
          // Slack's argument is alt_txt; an alt_text is ignored, as Slack ignores it.
          ...(args.alt_txt ? { altText: String(args.alt_txt) } : {}),
          permalink: `https://fake.slack.test/files/${id}`,
        });
        return { ok: true, upload_url: `http://127.0.0.1:${this.port}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal': {
        const list = jsonArg<Array<{ id: string; title?: string }>>(args.files, []);
        const done: FakeFile[] = [];
        for (const entry of list) {
          const file = this.files.get(entry.id);
          if (!file?.bytes) return { ok: false, error: 'file_not_found' };
          if (entry.title) file.title = entry.title;
          if (args.channel_id) file.channel = String(args.channel_id);
          if (args.thread_ts) file.threadTs = String(args.thread_ts);
          if (args.initial_comment) file.initialComment = String(args.initial_comment);
          done.push(file);
        }
        if (args.channel_id) {
          this.messages.push({
            channel: String(args.channel_id),
            ts: this.nextTs(),
            text: String(args.initial_comment ?? ''),
            blocks: [],
            user: FAKE_BOT_USER_ID,
            files: done,
            updates: 0,
            ...(args.thread_ts ? { threadTs: String(args.thread_ts) } : {}),
          });
        }
        return {
          ok: true,
          files: done.map((f) => ({
            id: f.id,
            name: f.filename,
            title: f.title ?? f.filename,
            permalink: f.permalink,
          })),
        };
      }
      case 'files.info': {
        const file = this.files.get(String(args.file ?? ''));
        if (!file?.bytes) return { ok: false, error: 'file_not_found' };
        const filetype = file.filename.split('.').pop()?.toLowerCase() ?? '';
        const mimetype =
          file.mimetype ??
          (filetype === 'png'
            ? 'image/png'
            : filetype === 'jpg' || filetype === 'jpeg'
              ? 'image/jpeg'
              : filetype === 'webp'
                ? 'image/webp'
                : 'application/octet-stream');
        return {
          ok: true,
          file: {
            id: file.id,
            name: file.filename,
            title: file.title ?? file.filename,
            mimetype,
            filetype,
            size: file.bytes.length,
            url_private: this.urlPrivate(file),
            url_private_download: `${this.urlPrivate(file)}?download=1`,
            permalink: file.permalink,
            ...(file.width ? { original_w: file.width } : {}),
            ...(file.height ? { original_h: file.height } : {}),
          },
        };
      }
      case 'conversations.open': {
        const users = String(args.users ?? '')
          .split(',')
          .filter(Boolean);
        if (users.length === 0 && !args.channel)
          return { ok: false, error: 'users_list_not_supplied' };
        if (users.length > 1) return { ok: false, error: 'method_not_supported_for_channel_type' };
        const channel = users[0] ? this.dmOf(users[0]) : String(args.channel);
        return { ok: true, channel: { id: channel } };
      }
      case 'conversations.join': {
        if (!args.channel) return { ok: false, error: 'channel_not_found' };
        this.joined.add(String(args.channel));
        return { ok: true, channel: { id: String(args.channel), is_member: true } };
      }
      case 'users.info': {
        const user = this.users.get(String(args.user));
        if (!user) return { ok: false, error: 'user_not_found' };
        return {
          ok: true,
          user: {
            is_admin: false,
            is_owner: false,
            ...user,
            team_id: this.teamId,
            real_name: user.name,
            profile: { display_name: user.name },
          },
        };
      }
      case 'views.publish': {
        const view = jsonArg<Record<string, unknown>>(args.view, {});
        this.homeViews.push({ userId: String(args.user_id), view });
        return { ok: true, view: { id: `V${++this.seq}`, ...view } };
      }
      case 'views.open': {
        const view = jsonArg<Record<string, unknown>>(args.view, {});
        this.openedViews.push({ triggerId: String(args.trigger_id), view });
        return { ok: true, view: { id: `V${++this.seq}`, ...view } };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  /**
   * `url_private`: served only with `Authorization: Bearer <bot token>`. Without it (or with a
   * wrong one) Slack answers with a redirect to its sign-in page, not with a 401 and not with
   * the file, so a client that follows redirects gets HTML.
   */
  private download(url: URL, req: IncomingMessage, res: ServerResponse): void {
    const [, , key] = url.pathname.split('/');
    const id = key?.slice(this.teamId.length + 1) ?? '';
    const file = this.files.get(id);
    const authorized = String(req.headers.authorization ?? '') === `Bearer ${this.botToken}`;
    this.downloads.push({ fileId: id, authorized });
    if (!authorized) {
      res.writeHead(302, {
        location: `http://127.0.0.1:${this.port}/login?redir=${encodeURIComponent(url.pathname)}`,
      });
      res.end();
      return;
    }
    if (!file?.bytes) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('file not found');
      return;
    }
    res.writeHead(200, {
      'content-type': file.mimetype ?? 'application/octet-stream',
      'content-length': String(file.bytes.length),
    });
    res.end(file.bytes);
  }

  /** The upload URL: @slack/web-api posts the bytes as multipart/form-data. */
  private async upload(
    url: URL,
    req: IncomingMessage,
    body: Buffer,
    res: ServerResponse,
  ): Promise<void> {
    const id = url.pathname.slice('/upload/'.length);
    const file = this.files.get(id);
    if (!file) {
      res.writeHead(404);
      res.end();
      return;
    }
    const contentType = String(req.headers['content-type'] ?? 'application/octet-stream');
    let bytes = body;
    if (contentType.startsWith('multipart/form-data')) {
      const form = await new Response(body as Uint8Array<ArrayBuffer>, {
        headers: { 'content-type': contentType },
      }).formData();
      const part = [...form.values()].find((v): v is File => typeof v !== 'string');
      if (!part) {
        res.writeHead(400);
        res.end('no file part');
        return;
      }
      bytes = Buffer.from(await part.arrayBuffer());
    }
    file.bytes = bytes;
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`OK - ${bytes.length}`);
  }
}
