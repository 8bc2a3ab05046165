/**
 * A local fake Discord that the real discord.js client and @discordjs/rest run against
 * unchanged: REST under `/api/v10` (interaction callbacks, webhook message edits with strict
 * multipart checks, follow-ups, channel messages, guilds, command registration) and a gateway
 * (`GET /gateway/bot` → a loopback WebSocket speaking HELLO / IDENTIFY / READY / heartbeat /
 * INTERACTION_CREATE). As strict as Discord's docs: the initial response within 3 s (HTTP mode
 * cuts the request), tokens that die 15 minutes after the interaction on a clock the test
 * moves, one initial response (40060 for a second), every gateway session receives each
 * interaction, 10008 for a deleted message, channel posts checked against the bot's
 * permissions there (threads need SEND_MESSAGES_IN_THREADS), upload limits by boost tier,
 * per-route rate-limit buckets announced in `X-RateLimit-*` headers (429 when overrun), and the
 * global limit on bot-token requests (50 a second; 429 with `X-RateLimit-Global: true`,
 * `X-RateLimit-Scope: global` and `"global": true`, holding every bot-token request until it
 * ends; interaction callbacks and webhook-token routes are not bound by it, as Discord says).
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  APIAttachment,
  APIChatInputApplicationCommandInteraction,
  APIMessage,
  APIMessageComponentButtonInteraction,
  APIMessageComponentSelectMenuInteraction,
} from 'discord.js';
import { type WebSocket, WebSocketServer } from 'ws';

/** A file part received in a multipart request. */
export interface ReceivedFile {
  field: string;
  filename: string;
  contentType: string;
  bytes: Buffer;
}

/** One request the fake answered. */
export interface RecordedRequest {
  method: string;
  path: string;
  at: number;
  status: number;
  /** JSON body, or the parsed `payload_json` of a multipart body. */
  body: Record<string, unknown> | undefined;
  files: ReceivedFile[];
  multipart: boolean;
}

/** A message with the bytes of its attachments. */
export interface FakeMessage extends APIMessage {
  /** Attachment bytes by attachment id. */
  bytes: Record<string, Buffer>;
  /** Deferred "thinking" state, until the first edit. */
  loading: boolean;
  deleted: boolean;
}

interface FakeInteraction {
  id: string;
  /** True when Discord gave up waiting (no initial response within 3 s). */
  failed: boolean;
  /** When Discord created it: the initial response must come within 3 s. */
  createdAt: number;
  token: string;
  applicationId: string;
  channelId: string;
  attachmentLimit: number;
  responseType: number | undefined;
  expired: boolean;
  originalId: string | undefined;
  /** A component interaction: the message the component is on (types 6 and 7 act on it). */
  messageId?: string | undefined;
  followUps: Set<string>;
}

/** Discord's answer to a request over the global limit, `ms` before it ends. */
function globalLimited(ms: number): HttpError {
  const seconds = ms / 1000;
  return Object.assign(new HttpError(429, 0, 'You are being rate limited.'), {
    headers: {
      'retry-after': String(Math.max(1, Math.ceil(seconds))),
      'x-ratelimit-global': 'true',
      'x-ratelimit-scope': 'global',
    },
    body: { message: 'You are being rate limited.', retry_after: seconds, global: true },
  });
}

class HttpError extends Error {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(status: number, code: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.body = { code, message };
    this.headers = headers;
  }
}

const DISCORD_EPOCH = 1420070400000n;
const MIB = 1024 * 1024;
const DEFAULT_LIMIT = 10 * MIB;
/** Upload limit of a guild by boost tier (premium_tier 0-3). */
export const BOOST_TIER_LIMITS = [10 * MIB, 10 * MIB, 50 * MIB, 100 * MIB] as const;
/** Interaction tokens work this long after the interaction. */
export const TOKEN_LIFETIME_MS = 15 * 60 * 1000;
/** The initial response must come within this. */
export const INITIAL_RESPONSE_MS = 3000;

/** Permission bits the fake checks on channel posts. */
export const PERMISSIONS = {
  viewChannel: 1n << 10n,
  sendMessages: 1n << 11n,
  embedLinks: 1n << 14n,
  attachFiles: 1n << 15n,
  readMessageHistory: 1n << 16n,
  sendMessagesInThreads: 1n << 38n,
} as const;
/** What a bot invited with the right permissions holds in a channel. */
const FULL_TEXT_PERMISSIONS = Object.values(PERMISSIONS).reduce((a, b) => a | b, 0n);

/** A channel the fake knows: its type, parent (threads) and the bot's permissions in it. */
export interface FakeChannel {
  id: string;
  guildId: string;
  /** 0 text, 5 announcement, 10/11/12 threads. */
  type: number;
  parentId?: string | undefined;
  name: string;
  botPermissions: bigint;
}

const THREAD_TYPES = new Set([10, 11, 12]);

/** Options of {@link startFakeDiscord}. */
export interface FakeDiscordOptions {
  applicationId?: string;
  botToken?: string;
  /** Upload limit for channel messages (bytes); default: the guild's, by boost tier. */
  channelUploadLimit?: number;
  /** Requests per route bucket per window (default 5 per 2 s, Discord's usual message routes). */
  routeLimit?: { limit: number; windowMs: number };
  /** Bot-token requests per second, across all routes (default 50, Discord's global limit). */
  globalPerSecond?: number;
}

/** The fake. */
export class FakeDiscord extends EventEmitter {
  readonly applicationId: string;
  readonly botToken: string;
  readonly botUser = {
    id: '900000000000000001',
    username: 'imagine',
    discriminator: '0',
    global_name: null,
    avatar: null,
    bot: true,
  };
  readonly requests: RecordedRequest[] = [];
  readonly messages = new Map<string, FakeMessage>();
  readonly commands = new Map<string, unknown[]>();
  readonly interactions = new Map<string, FakeInteraction>();
  /** Gateway sessions that completed IDENTIFY. */
  readonly identified: WebSocket[] = [];
  readonly heartbeats: number[] = [];
  url = '';
  private server: Server | undefined;
  private cdn: Server | undefined;
  /** Base URL of the fake CDN (a loopback host of its own, like `cdn.discordapp.com`). */
  cdnUrl = '';
  /** Requests the CDN answered, with their status. */
  readonly cdnRequests: Array<{ path: string; status: number }> = [];
  private readonly cdnSecret = randomBytes(16);
  private readonly cdnFiles = new Map<string, { bytes: Buffer; contentType: string }>();
  private wss: WebSocketServer | undefined;
  private counter = 0n;
  private seq = 0;
  private readonly rateLimits: Array<{
    match: (method: string, path: string) => boolean;
    retryAfter: number;
  }> = [];
  private readonly channelUploadLimit: number | undefined;
  private readonly routeLimit: { limit: number; windowMs: number };
  private readonly buckets = new Map<string, { remaining: number; resetAt: number }>();
  private readonly globalPerSecond: number;
  /** The current second of bot-token requests: when it began and how many it has seen. */
  private globalWindow = { startedAt: 0, count: 0 };
  /** Until when (ms) a global rate limit holds every bot-token request. */
  private globalUntil = 0;
  /** Seconds of a global limit the next bot-token request starts (see {@link rateLimitGloballyNext}). */
  private globalNext: number | undefined;
  /** Channels by id (threads included); unknown channels are plain text channels. */
  readonly channels = new Map<string, FakeChannel>();
  /** Guild boost tiers by guild id (0 when unknown). */
  readonly guildTiers = new Map<string, number>();
  private clockOffsetMs = 0;
  /** HTTP-mode interactions whose response Discord has not read yet, by token. */
  private readonly pendingAcks = new Map<string, Promise<void>>();

  constructor(opts: FakeDiscordOptions = {}) {
    super();
    this.applicationId = opts.applicationId ?? '800000000000000001';
    this.botToken = opts.botToken ?? `fake-bot-token.${randomBytes(8).toString('hex')}`;
    this.channelUploadLimit = opts.channelUploadLimit;
    this.routeLimit = opts.routeLimit ?? { limit: 5, windowMs: 2000 };
    this.globalPerSecond = opts.globalPerSecond ?? 50;
  }

  /** Discord's clock: real time, moved on by {@link advance}. */
  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  /** Move Discord's clock forward (tokens expire 15 minutes after their interaction). */
  advance(ms: number): void {
    this.clockOffsetMs += ms;
  }

  /** Register a thread under a channel; the bot's permissions there default to full text ones. */
  addThread(opts: {
    parentId: string;
    guildId?: string;
    type?: 10 | 11 | 12;
    botPermissions?: bigint;
  }): FakeChannel {
    const channel: FakeChannel = {
      id: this.snowflake(),
      guildId: opts.guildId ?? '600000000000000001',
      type: opts.type ?? 11,
      parentId: opts.parentId,
      name: 'a thread',
      botPermissions: opts.botPermissions ?? FULL_TEXT_PERMISSIONS,
    };
    this.channels.set(channel.id, channel);
    return channel;
  }

  /** Set the bot's permissions in a channel (creating it as a text channel if unknown). */
  setBotPermissions(channelId: string, bits: bigint): void {
    this.channels.set(channelId, { ...this.channelOf(channelId), botPermissions: bits });
  }

  private channelOf(channelId: string, guildId = '600000000000000001'): FakeChannel {
    return (
      this.channels.get(channelId) ?? {
        id: channelId,
        guildId,
        type: 0,
        name: 'art',
        botPermissions: FULL_TEXT_PERMISSIONS,
      }
    );
  }

  /** What a bot message in this guild may carry, by its boost tier. */
  guildUploadLimit(guildId: string | undefined): number {
    if (this.channelUploadLimit !== undefined) return this.channelUploadLimit;
    const tier = guildId ? (this.guildTiers.get(guildId) ?? 0) : 0;
    return BOOST_TIER_LIMITS[tier] ?? DEFAULT_LIMIT;
  }

  /** A user (or moderator) deletes a message: edits of it answer 10008 from now on. */
  deleteMessage(messageId: string): void {
    const msg = this.messages.get(messageId);
    if (msg) msg.deleted = true;
  }

  /** Base URL for `DISCORD_API_URL` / `rest: { api }` (without the version). */
  get apiUrl(): string {
    return `${this.url}/api`;
  }

  /** A fresh snowflake. */
  snowflake(): string {
    this.counter += 1n;
    return String(((BigInt(Date.now()) - DISCORD_EPOCH) << 22n) | (this.counter & 0x3fffffn));
  }

  async listen(): Promise<void> {
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.wss = new WebSocketServer({ noServer: true });
    this.server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== '/gateway' || url.searchParams.get('v') !== '10') {
        socket.destroy();
        return;
      }
      this.wss!.handleUpgrade(req, socket, head, (ws) => this.onGateway(ws, url));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    this.cdn = createServer((req, res) => this.onCdn(req, res));
    await new Promise<void>((resolve) => this.cdn!.listen(0, '127.0.0.1', resolve));
    this.cdnUrl = `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
  }

  /** The CDN host (`host:port`), to allow as an input image host. */
  get cdnHost(): string {
    return new URL(this.cdnUrl).host;
  }

  /**
   * Attachment links are signed and expire, as Discord's are (`ex`, `is`, `hm`): 24 hours on
   * Discord's clock. Every message Discord hands out carries freshly signed links.
   */
  signCdnUrl(url: string): string {
    const u = new URL(url);
    const now = Math.floor(this.now() / 1000);
    const ex = (now + 24 * 3600).toString(16);
    u.search = new URLSearchParams({
      ex,
      is: now.toString(16),
      hm: this.cdnMac(u.pathname, ex),
    }).toString();
    return u.toString();
  }

  private cdnMac(path: string, ex: string): string {
    return createHmac('sha256', this.cdnSecret).update(`${path}|${ex}`).digest('hex');
  }

  private onCdn(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const ex = url.searchParams.get('ex') ?? '';
    const file = this.cdnFiles.get(url.pathname);
    const fresh =
      /^[0-9a-f]{1,12}$/.test(ex) &&
      Number.parseInt(ex, 16) * 1000 > this.now() &&
      url.searchParams.get('hm') === this.cdnMac(url.pathname, ex);
    const status = req.method !== 'GET' ? 405 : !file || !fresh ? 404 : 200;
    this.cdnRequests.push({ path: url.pathname, status });
    if (status !== 200 || !file) {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end('This content is no longer available.');
      return;
    }
    res.writeHead(200, { 'content-type': file.contentType, 'content-length': file.bytes.length });
    res.end(file.bytes);
  }

  /**
   * A file a user attached to a command option: hosted on the CDN, returned as the resolved
   * attachment the interaction carries.
   */
  uploadAttachment(opts: {
    bytes: Buffer;
    filename: string;
    contentType: string;
    width?: number;
    height?: number;
  }): APIAttachment {
    const id = this.snowflake();
    const path = `/ephemeral-attachments/${this.applicationId}/${id}/${opts.filename}`;
    this.cdnFiles.set(path, { bytes: opts.bytes, contentType: opts.contentType });
    const url = this.signCdnUrl(`${this.cdnUrl}${path}`);
    return {
      id,
      filename: opts.filename,
      size: opts.bytes.length,
      url,
      proxy_url: url,
      content_type: opts.contentType,
      ...(opts.width && opts.height ? { width: opts.width, height: opts.height } : {}),
      ephemeral: true,
    } as APIAttachment;
  }

  async close(): Promise<void> {
    for (const ws of this.wss?.clients ?? []) ws.terminate();
    this.wss?.close();
    this.server?.closeAllConnections();
    this.cdn?.closeAllConnections();
    await new Promise<void>((resolve) => (this.cdn ? this.cdn.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }

  /** Answer the next request matching with a 429 and `Retry-After: seconds`. */
  rateLimitNext(match: (method: string, path: string) => boolean, retryAfterSeconds = 1): void {
    this.rateLimits.push({ match, retryAfter: retryAfterSeconds });
  }

  /**
   * Start a global rate limit of `retryAfterSeconds` at the next bot-token request: it is
   * answered 429 (global), and so is every bot-token request until the limit ends.
   */
  rateLimitGloballyNext(retryAfterSeconds: number): void {
    this.globalNext = retryAfterSeconds;
  }

  /** Refuse uploads over this many bytes everywhere, whatever the interaction announced. */
  enforcedUploadLimit: number | undefined;

  /** Make an interaction token stop working (as after 15 minutes). */
  expireToken(token: string): void {
    const i = this.interactions.get(token);
    if (i) i.expired = true;
  }

  /** Requests matching a predicate so far. */
  find(predicate: (r: RecordedRequest) => boolean): RecordedRequest[] {
    return this.requests.filter(predicate);
  }

  /** Resolve with the first recorded request (past or future) that matches. */
  waitFor(
    predicate: (r: RecordedRequest) => boolean,
    timeoutMs = 20_000,
  ): Promise<RecordedRequest> {
    const found = this.requests.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('request', on);
        reject(new Error('fake discord: no matching request'));
      }, timeoutMs);
      const on = (r: RecordedRequest) => {
        if (!predicate(r)) return;
        clearTimeout(timer);
        this.off('request', on);
        resolve(r);
      };
      this.on('request', on);
    });
  }

  /** The current state of an interaction's original response. */
  original(token: string): FakeMessage | undefined {
    const id = this.interactions.get(token)?.originalId;
    return id ? this.messages.get(id) : undefined;
  }

  /** Follow-up messages of an interaction, in order. */
  followUps(token: string): FakeMessage[] {
    const i = this.interactions.get(token);
    return [...(i?.followUps ?? [])].flatMap((id) => this.messages.get(id) ?? []);
  }

  /** Messages posted to a channel with the bot token. */
  channelMessages(channelId: string): FakeMessage[] {
    return [...this.messages.values()].filter(
      (m) => m.channel_id === channelId && m.webhook_id === undefined,
    );
  }

  // ---- interactions -------------------------------------------------------------------

  private base(opts: {
    type: number;
    userId?: string | undefined;
    guildId?: string | undefined;
    channelId?: string | undefined;
    attachmentSizeLimit?: number | undefined;
  }) {
    const id = this.snowflake();
    const token = `itoken.${randomBytes(24).toString('base64url')}`;
    const channelId = opts.channelId ?? '700000000000000001';
    const guildId = opts.guildId ?? '600000000000000001';
    const channel = this.channelOf(channelId, guildId);
    this.channels.set(channelId, channel);
    const limit = opts.attachmentSizeLimit ?? this.guildUploadLimit(guildId);
    this.interactions.set(token, {
      id,
      failed: false,
      createdAt: this.now(),
      token,
      applicationId: this.applicationId,
      channelId,
      attachmentLimit: limit,
      responseType: undefined,
      expired: false,
      originalId: undefined,
      followUps: new Set(),
    });
    const user = {
      id: opts.userId ?? '500000000000000001',
      username: 'painter',
      discriminator: '0',
      global_name: 'Painter',
      avatar: null,
    };
    return {
      id,
      application_id: this.applicationId,
      type: opts.type,
      token,
      version: 1,
      locale: 'en-US',
      guild_locale: 'en-US',
      app_permissions: String(channel.botPermissions),
      entitlements: [],
      authorizing_integration_owners: { '0': guildId },
      context: 0,
      attachment_size_limit: limit,
      guild_id: guildId,
      guild: { id: guildId, locale: 'en-US', features: [] },
      channel_id: channelId,
      channel: {
        id: channelId,
        type: channel.type,
        guild_id: guildId,
        name: channel.name,
        ...(channel.parentId ? { parent_id: channel.parentId } : {}),
      },
      member: {
        user,
        roles: [],
        joined_at: new Date(0).toISOString(),
        deaf: false,
        mute: false,
        flags: 0,
        permissions: '2248473465835073',
      },
    };
  }

  /** A `/imagine` interaction (register it and get the payload to dispatch or POST). */
  commandInteraction(opts: {
    prompt: string;
    guildId?: string;
    aspect?: string;
    seed?: number;
    userId?: string;
    channelId?: string;
    attachmentSizeLimit?: number;
    /** An attached image (from {@link uploadAttachment}). */
    image?: APIAttachment;
    strength?: string;
    count?: number;
    model?: string;
  }): APIChatInputApplicationCommandInteraction {
    const options: Array<{ name: string; type: number; value: string | number }> = [
      { name: 'prompt', type: 3, value: opts.prompt },
    ];
    if (opts.image) options.push({ name: 'image', type: 11, value: opts.image.id });
    if (opts.strength) options.push({ name: 'strength', type: 3, value: opts.strength });
    if (opts.count !== undefined) options.push({ name: 'count', type: 4, value: opts.count });
    if (opts.model !== undefined) options.push({ name: 'model', type: 3, value: opts.model });
    if (opts.aspect) options.push({ name: 'aspect', type: 3, value: opts.aspect });
    if (opts.seed !== undefined) options.push({ name: 'seed', type: 4, value: opts.seed });
    return {
      ...this.base({ type: 2, ...opts }),
      data: {
        id: '400000000000000001',
        name: 'imagine',
        type: 1,
        options,
        ...(opts.image ? { resolved: { attachments: { [opts.image.id]: opts.image } } } : {}),
      },
    } as unknown as APIChatInputApplicationCommandInteraction;
  }

  /** A button click on a message. */
  buttonInteraction(
    message: APIMessage,
    customId: string,
    opts: { userId?: string; attachmentSizeLimit?: number; permissions?: string } = {},
  ): APIMessageComponentButtonInteraction {
    const { permissions, ...rest } = opts;
    const payload = this.base({ type: 3, channelId: message.channel_id, ...rest });
    const i = this.interactions.get(payload.token);
    if (i) i.messageId = message.id;
    return {
      ...payload,
      member: { ...payload.member, ...(permissions ? { permissions } : {}) },
      data: { custom_id: customId, component_type: 2 },
      message: this.plain(message as FakeMessage),
    } as unknown as APIMessageComponentButtonInteraction;
  }

  /** A choice in a string select menu on a message. */
  selectInteraction(
    message: APIMessage,
    customId: string,
    values: string[],
  ): APIMessageComponentSelectMenuInteraction {
    return {
      ...this.base({ type: 3, channelId: message.channel_id }),
      data: { custom_id: customId, component_type: 3, values },
      message: this.plain(message as FakeMessage),
    } as unknown as APIMessageComponentSelectMenuInteraction;
  }

  /** A PING, as Discord sends to check an HTTP endpoint. */
  pingInteraction(): Record<string, unknown> {
    const b = this.base({ type: 1 });
    return { id: b.id, application_id: b.application_id, type: 1, token: b.token, version: 1 };
  }

  /**
   * HTTP mode: POST a signed interaction to the app's endpoint, as Discord does, and record the
   * response as the interaction's initial response. Webhook calls for the interaction wait until
   * then, as they would at Discord.
   */
  async postInteraction(
    endpoint: string,
    interaction: { token: string } | string,
    headers: (body: string) => Record<string, string>,
  ): Promise<{ status: number; body: unknown; timedOut: boolean }> {
    const raw = typeof interaction === 'string' ? interaction : JSON.stringify(interaction);
    const token = typeof interaction === 'string' ? tokenOf(interaction) : interaction.token;
    const { promise, resolve } = Promise.withResolvers<void>();
    if (token) this.pendingAcks.set(token, promise);
    const i = token ? this.interactions.get(token) : undefined;
    try {
      let res: Response;
      let body: unknown;
      try {
        // Discord waits 3 s for the response, then tells the user the interaction failed.
        res = await fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers(raw) },
          body: raw,
          signal: AbortSignal.timeout(INITIAL_RESPONSE_MS),
        });
        body = (await res.json()) as unknown;
      } catch (err) {
        if ((err as Error).name !== 'TimeoutError') throw err;
        if (i && i.responseType === undefined) i.failed = true;
        return { status: 0, body: undefined, timedOut: true };
      }
      if (res.status === 200 && i && i.responseType === undefined) this.callback(i, body);
      else if (i && i.responseType === undefined) i.failed = true;
      return { status: res.status, body, timedOut: false };
    } finally {
      if (token) this.pendingAcks.delete(token);
      resolve();
    }
  }

  /** Record an initial response as if the app had sent it (for deliverer-only tests). */
  acknowledge(token: string, response: { type: number; data?: Record<string, unknown> }): void {
    const i = this.interactions.get(token);
    if (!i) throw new Error('fake discord: unknown interaction');
    this.callback(i, response);
  }

  /** Send INTERACTION_CREATE to every identified gateway session. */
  dispatch(interaction: unknown): void {
    if (this.identified.length === 0) throw new Error('fake discord: no gateway session');
    for (const ws of this.identified)
      ws.send(JSON.stringify({ op: 0, t: 'INTERACTION_CREATE', s: ++this.seq, d: interaction }));
  }

  // ---- gateway ------------------------------------------------------------------------

  private onGateway(ws: WebSocket, url: URL): void {
    if (url.searchParams.get('encoding') !== 'json') {
      ws.close(4002, 'decode error');
      return;
    }
    ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: 41_250 }, s: null, t: null }));
    ws.on('message', (data) => {
      let msg: { op: number; d: unknown };
      try {
        msg = JSON.parse(String(data));
      } catch {
        ws.close(4002, 'decode error');
        return;
      }
      if (msg.op === 1) {
        this.heartbeats.push(Date.now());
        ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }));
      } else if (msg.op === 2) {
        const d = msg.d as { token?: string; intents?: number };
        if (d.token !== this.botToken) {
          ws.close(4004, 'Authentication failed.');
          return;
        }
        if (typeof d.intents !== 'number') {
          ws.close(4013, 'Invalid intent(s).');
          return;
        }
        this.identified.push(ws);
        ws.once('close', () => this.identified.splice(this.identified.indexOf(ws), 1));
        ws.send(
          JSON.stringify({
            op: 0,
            t: 'READY',
            s: ++this.seq,
            d: {
              v: 10,
              user: this.botUser,
              guilds: [],
              session_id: randomBytes(16).toString('hex'),
              resume_gateway_url: `${this.url.replace('http', 'ws')}/gateway`,
              shard: [0, 1],
              application: { id: this.applicationId, flags: 0 },
            },
          }),
        );
        this.emit('identify', ws);
      }
    });
  }

  // ---- REST ---------------------------------------------------------------------------

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const record: RecordedRequest = {
      method,
      path,
      at: Date.now(),
      status: 0,
      body: undefined,
      files: [],
      multipart: false,
    };
    let status = 200;
    let payload: unknown;
    let headers: Record<string, string> = {};
    try {
      const limited = this.rateLimits.findIndex((r) => r.match(method, path));
      if (limited >= 0) {
        const { retryAfter } = this.rateLimits.splice(limited, 1)[0]!;
        throw Object.assign(new HttpError(429, 0, 'You are being rate limited.'), {
          headers: { 'retry-after': String(retryAfter), 'x-ratelimit-scope': 'user' },
          body: { message: 'You are being rate limited.', retry_after: retryAfter, global: false },
        });
      }
      this.takeGlobal(method, path, req);
      headers = this.takeFromBucket(method, path);
      await this.parseBody(req, raw, record);
      const token = /^\/api\/v10\/webhooks\/\d+\/([^/]+)/.exec(path)?.[1];
      if (token) await this.pendingAcks.get(decodeURIComponent(token));
      const result = this.route(method, path, req, record);
      status = result.status;
      payload = result.body;
    } catch (err) {
      if (!(err instanceof HttpError)) {
        status = 500;
        payload = { code: 0, message: String(err) };
      } else {
        status = err.status;
        payload = err.body;
        headers = { ...headers, ...err.headers };
      }
    }
    record.status = status;
    this.requests.push(record);
    res.writeHead(status, {
      ...headers,
      ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
    });
    res.end(payload === undefined ? undefined : JSON.stringify(payload));
    this.emit('request', record);
  }

  /**
   * Per-route buckets, as Discord keys them: the route with its major parameter (channel, guild,
   * webhook + token, interaction), minor ids (message ids) folded. Every answer carries the
   * bucket's `X-RateLimit-*` headers; a request beyond the limit gets 429 with `Retry-After`.
   */
  private takeFromBucket(method: string, path: string): Record<string, string> {
    const route = `${method} ${path.replace(/\/messages\/\d+/, '/messages/:id')}`;
    const t = Date.now();
    let bucket = this.buckets.get(route);
    if (!bucket || bucket.resetAt <= t) {
      bucket = { remaining: this.routeLimit.limit, resetAt: t + this.routeLimit.windowMs };
      this.buckets.set(route, bucket);
    }
    const resetAfter = (bucket.resetAt - t) / 1000;
    const hash = createHash('sha1')
      .update(route.replace(/\d{5,}|itoken\.[\w-]+/g, ':major'))
      .digest('hex')
      .slice(0, 16);
    const headers: Record<string, string> = {
      'x-ratelimit-limit': String(this.routeLimit.limit),
      'x-ratelimit-reset': (bucket.resetAt / 1000).toFixed(3),
      'x-ratelimit-reset-after': resetAfter.toFixed(3),
      'x-ratelimit-bucket': hash,
    };
    if (bucket.remaining <= 0) {
      this.overruns.push(route);
      throw Object.assign(new HttpError(429, 0, 'You are being rate limited.'), {
        headers: {
          ...headers,
          'x-ratelimit-remaining': '0',
          'retry-after': String(Math.max(1, Math.ceil(resetAfter))),
          'x-ratelimit-scope': 'user',
        },
        body: { message: 'You are being rate limited.', retry_after: resetAfter, global: false },
      });
    }
    bucket.remaining -= 1;
    return { ...headers, 'x-ratelimit-remaining': String(bucket.remaining) };
  }

  /**
   * The global limit: bot-token requests per second, whatever the route. Interaction callbacks
   * and webhook-token routes go without the bot token and are not bound by it.
   */
  private takeGlobal(method: string, path: string, req: IncomingMessage): void {
    if (req.headers.authorization !== `Bot ${this.botToken}`) return;
    if (/^\/api\/v10\/(interactions|webhooks)\//.test(path)) return;
    const t = Date.now();
    if (t < this.globalUntil) {
      // Sent while a global limit announced on an earlier answer still held: ignored it.
      this.overruns.push(`global ${method} ${path}`);
      throw globalLimited(this.globalUntil - t);
    }
    if (this.globalNext !== undefined) {
      const ms = this.globalNext * 1000;
      this.globalNext = undefined;
      this.globalUntil = t + ms;
      throw globalLimited(ms);
    }
    if (t - this.globalWindow.startedAt >= 1000) this.globalWindow = { startedAt: t, count: 0 };
    if (this.globalWindow.count >= this.globalPerSecond) {
      this.overruns.push(`global ${method} ${path}`);
      this.globalUntil = this.globalWindow.startedAt + 1000;
      throw globalLimited(this.globalUntil - t);
    }
    this.globalWindow.count += 1;
  }

  /** Routes on which a client sent more than its bucket allowed (it ignored the headers). */
  readonly overruns: string[] = [];

  private async parseBody(req: IncomingMessage, raw: Buffer, record: RecordedRequest) {
    const type = req.headers['content-type'] ?? '';
    if (raw.length === 0) return;
    if (type.startsWith('application/json')) {
      record.body = JSON.parse(raw.toString('utf8'));
      return;
    }
    if (!type.startsWith('multipart/form-data'))
      throw new HttpError(400, 50109, `unsupported content type ${type}`);
    record.multipart = true;
    const form = await new Request('http://x/', {
      method: 'POST',
      headers: { 'content-type': type },
      body: new Uint8Array(raw),
    }).formData();
    for (const [field, value] of form.entries()) {
      if (field === 'payload_json') {
        if (typeof value !== 'string') throw new HttpError(400, 50035, 'payload_json must be text');
        record.body = JSON.parse(value);
        continue;
      }
      if (!/^files\[\d+\]$/.test(field))
        throw new HttpError(400, 50035, `unexpected multipart field ${field}`);
      if (typeof value === 'string') throw new HttpError(400, 50035, `${field} must be a file`);
      record.files.push({
        field,
        filename: value.name,
        contentType: value.type,
        bytes: Buffer.from(await value.arrayBuffer()),
      });
    }
    if (!record.body) throw new HttpError(400, 50035, 'multipart body without payload_json');
  }

  private requireBot(req: IncomingMessage): void {
    if (req.headers.authorization !== `Bot ${this.botToken}`)
      throw new HttpError(401, 0, '401: Unauthorized');
  }

  private interaction(appId: string, token: string): FakeInteraction {
    const i = this.interactions.get(token);
    if (!i || i.applicationId !== appId) throw new HttpError(404, 10015, 'Unknown Webhook');
    if (i.expired || this.now() - i.createdAt > TOKEN_LIFETIME_MS)
      throw new HttpError(401, 50027, 'Invalid Webhook Token');
    // Never answered in time: the token never became a webhook.
    if (i.failed) throw new HttpError(404, 10015, 'Unknown Webhook');
    return i;
  }

  /** The bot may post in a channel only with the permissions Discord would check there. */
  private checkChannelPost(channel: FakeChannel, record: RecordedRequest): void {
    const has = (bit: bigint) => (channel.botPermissions & bit) === bit;
    if (!has(PERMISSIONS.viewChannel)) throw new HttpError(403, 50001, 'Missing Access');
    const send = THREAD_TYPES.has(channel.type)
      ? PERMISSIONS.sendMessagesInThreads
      : PERMISSIONS.sendMessages;
    if (!has(send)) throw new HttpError(403, 50013, 'Missing Permissions');
    if (record.files.length > 0 && !has(PERMISSIONS.attachFiles))
      throw new HttpError(403, 50013, 'Missing Permissions');
  }

  private route(
    method: string,
    path: string,
    req: IncomingMessage,
    record: RecordedRequest,
  ): { status: number; body?: unknown } {
    const m = (re: RegExp) => re.exec(path);
    const cmd = m(/^\/api\/v10\/applications\/(\d+)(?:\/guilds\/(\d+))?\/commands$/);
    const cb = m(/^\/api\/v10\/interactions\/(\d+)\/([^/]+)\/callback$/);
    const wm = m(/^\/api\/v10\/webhooks\/(\d+)\/([^/]+)\/messages\/([^/]+)$/);
    const wh = m(/^\/api\/v10\/webhooks\/(\d+)\/([^/]+)$/);
    const ch = m(/^\/api\/v10\/channels\/(\d+)\/messages$/);
    if (method === 'GET' && path === '/api/v10/gateway/bot') {
      this.requireBot(req);
      return {
        status: 200,
        body: {
          url: `${this.url.replace('http', 'ws')}/gateway`,
          shards: 1,
          session_start_limit: { total: 1000, remaining: 999, reset_after: 0, max_concurrency: 1 },
        },
      };
    }
    if (method === 'GET' && path === '/api/v10/applications/@me') {
      this.requireBot(req);
      return { status: 200, body: { id: this.applicationId, name: 'imagine', bot_public: true } };
    }
    if (method === 'PUT' && cmd) {
      this.requireBot(req);
      if (cmd[1] !== this.applicationId) throw new HttpError(403, 50001, 'Missing Access');
      if (!Array.isArray(record.body)) throw new HttpError(400, 50035, 'expected an array');
      const stored = (record.body as Array<Record<string, unknown>>).map((c) => {
        if (typeof c.name !== 'string' || !/^[-_\p{L}\p{N}]{1,32}$/u.test(c.name))
          throw new HttpError(400, 50035, 'invalid command name');
        if (typeof c.description !== 'string' || c.description.length > 100)
          throw new HttpError(400, 50035, 'invalid command description');
        return { ...c, id: this.snowflake(), application_id: this.applicationId, version: '1' };
      });
      this.commands.set(cmd[2] ? `guild:${cmd[2]}` : 'global', stored);
      return { status: 200, body: stored };
    }
    if (method === 'POST' && cb) {
      const i = this.interactions.get(decodeURIComponent(cb[2]!));
      if (!i || i.id !== cb[1]) throw new HttpError(404, 10062, 'Unknown interaction');
      // Discord forgets an interaction not answered within 3 s.
      if (i.failed || this.now() - i.createdAt > INITIAL_RESPONSE_MS) {
        i.failed = i.responseType === undefined;
        throw new HttpError(404, 10062, 'Unknown interaction');
      }
      return { status: 204, body: this.callback(i, record.body) };
    }
    if (wm) {
      const i = this.interaction(wm[1]!, decodeURIComponent(wm[2]!));
      const ref = decodeURIComponent(wm[3]!);
      const id = ref === '@original' ? i.originalId : ref;
      const msg = id ? this.messages.get(id) : undefined;
      const belongs = msg && (msg.id === i.originalId || i.followUps.has(msg.id));
      if (!msg || msg.deleted || !belongs) throw new HttpError(404, 10008, 'Unknown Message');
      if (method === 'GET') return { status: 200, body: this.plain(msg) };
      if (method === 'DELETE') {
        msg.deleted = true;
        return { status: 204 };
      }
      if (method === 'PATCH') {
        this.applyEdit(msg, record, i.attachmentLimit);
        return { status: 200, body: this.plain(msg) };
      }
    }
    if (method === 'POST' && wh) {
      const i = this.interaction(wh[1]!, decodeURIComponent(wh[2]!));
      if (i.responseType === undefined) throw new HttpError(404, 10015, 'Unknown Webhook');
      const original = i.originalId ? this.messages.get(i.originalId) : undefined;
      if (original?.loading && !original.deleted) {
        // Discord: the first follow-up after a deferral replaces the "thinking" message.
        this.applyEdit(original, record, i.attachmentLimit);
        return { status: 200, body: this.plain(original) };
      }
      const msg = this.newMessage(i.channelId, true);
      this.applyEdit(msg, record, i.attachmentLimit);
      msg.flags = Number((record.body as { flags?: number })?.flags ?? 0);
      i.followUps.add(msg.id);
      return { status: 200, body: this.plain(msg) };
    }
    const guild = m(/^\/api\/v10\/guilds\/(\d+)$/);
    if (method === 'GET' && guild) {
      this.requireBot(req);
      const id = guild[1]!;
      return {
        status: 200,
        body: {
          id,
          name: 'art club',
          premium_tier: this.guildTiers.get(id) ?? 0,
          features: [],
          roles: [],
          emojis: [],
        },
      };
    }
    if (method === 'POST' && ch) {
      this.requireBot(req);
      const channel = this.channelOf(ch[1]!);
      this.checkChannelPost(channel, record);
      const msg = this.newMessage(ch[1]!, false);
      this.applyEdit(msg, record, this.guildUploadLimit(channel.guildId));
      const ref = (record.body as { message_reference?: { message_id?: string } })
        .message_reference;
      if (ref?.message_id)
        msg.message_reference = { message_id: ref.message_id, channel_id: ch[1]! };
      return { status: 200, body: this.plain(msg) };
    }
    throw new HttpError(404, 0, `404: Not Found (${method} ${path})`);
  }

  private callback(i: FakeInteraction, body: unknown): undefined {
    const b = body as { type?: number; data?: Record<string, unknown> } | undefined;
    if (!b || typeof b.type !== 'number') throw new HttpError(400, 50035, 'type required');
    if (i.responseType !== undefined)
      throw new HttpError(400, 40060, 'Interaction has already been acknowledged.');
    if (![1, 4, 5, 6, 7].includes(b.type))
      throw new HttpError(400, 50035, `unsupported response type ${b.type}`);
    i.responseType = b.type;
    if (b.type === 4 || b.type === 5) {
      const msg = this.newMessage(i.channelId, true);
      msg.loading = b.type === 5;
      if (b.data)
        this.applyEdit(
          msg,
          { body: b.data, files: [] } as unknown as RecordedRequest,
          i.attachmentLimit,
        );
      msg.loading = b.type === 5;
      msg.flags = Number(b.data?.flags ?? 0) | (b.type === 5 ? 128 : 0);
      i.originalId = msg.id;
    }
    // A component's DEFERRED_UPDATE_MESSAGE (6) / UPDATE_MESSAGE (7): @original is the message
    // the component is on.
    if ((b.type === 6 || b.type === 7) && i.messageId) {
      const msg = this.messages.get(i.messageId);
      if (msg && b.type === 7 && b.data)
        this.applyEdit(
          msg,
          { body: b.data, files: [] } as unknown as RecordedRequest,
          i.attachmentLimit,
        );
      i.originalId = i.messageId;
    }
    return undefined;
  }

  private newMessage(channelId: string, webhook: boolean): FakeMessage {
    const id = this.snowflake();
    const msg: FakeMessage = {
      id,
      channel_id: channelId,
      author: { ...this.botUser },
      content: '',
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: [],
      embeds: [],
      components: [],
      pinned: false,
      type: 0,
      flags: 0,
      ...(webhook ? { webhook_id: this.applicationId, application_id: this.applicationId } : {}),
      bytes: {},
      loading: false,
      deleted: false,
    } as unknown as FakeMessage;
    this.messages.set(id, msg);
    return msg;
  }

  private plain(msg: FakeMessage): APIMessage {
    const { bytes: _b, loading: _l, deleted: _d, ...rest } = msg;
    const copy = structuredClone(rest) as APIMessage;
    copy.attachments = copy.attachments.map((a) => ({
      ...a,
      url: this.signCdnUrl(a.url),
      proxy_url: this.signCdnUrl(a.proxy_url),
    }));
    return copy;
  }

  /** Strict checks on a message body, then apply it (create or edit). */
  private applyEdit(msg: FakeMessage, record: RecordedRequest, limit: number): void {
    const body = (record.body ?? {}) as Record<string, unknown>;
    if (typeof body.content === 'string' && body.content.length > 2000)
      throw new HttpError(400, 50035, 'content longer than 2000');
    if (Array.isArray(body.embeds)) checkEmbeds(body.embeds);
    if (Array.isArray(body.components)) checkComponents(body.components);
    const files = record.files;
    const cap = Math.min(limit, this.enforcedUploadLimit ?? limit);
    for (const f of files)
      if (f.bytes.length > cap) throw new HttpError(413, 40005, 'Request entity too large');
    const listed = body.attachments as
      | Array<{ id?: unknown; filename?: unknown; description?: unknown }>
      | undefined;
    if (files.length > 0 && !Array.isArray(listed))
      throw new HttpError(400, 50035, 'files sent without an attachments array');
    let nextAttachments = msg.attachments;
    let nextBytes = msg.bytes;
    if (Array.isArray(listed)) {
      nextAttachments = [];
      nextBytes = {};
      const byIndex = new Map(files.map((f) => [f.field.slice(6, -1), f]));
      for (const a of listed) {
        const key = String(a.id);
        const file = byIndex.get(key);
        // Discord: alt text is the attachment's description, at most 1024 characters.
        if (
          a.description !== undefined &&
          (typeof a.description !== 'string' || [...a.description].length > 1024)
        )
          throw new HttpError(400, 50035, `attachments[${key}].description is over 1024`);
        if (file) {
          byIndex.delete(key);
          const id = this.snowflake();
          const filename = typeof a.filename === 'string' ? a.filename : file.filename;
          const path = `/attachments/${msg.channel_id}/${id}/${filename}`;
          this.cdnFiles.set(path, { bytes: file.bytes, contentType: file.contentType });
          nextAttachments.push({
            id,
            filename,
            size: file.bytes.length,
            url: `${this.cdnUrl}${path}`,
            proxy_url: `${this.cdnUrl}${path}`,
            content_type: file.contentType,
            ...(typeof a.description === 'string' ? { description: a.description } : {}),
            // A SPOILER_ file name is how a spoiler is marked: the client blurs it.
            ...(filename.startsWith('SPOILER_') ? { flags: 8 } : {}),
          });
          nextBytes[id] = file.bytes;
          continue;
        }
        const kept = msg.attachments.find((x) => x.id === key);
        if (!kept) throw new HttpError(400, 50035, `attachments[${key}] matches no file`);
        nextAttachments.push(kept);
        nextBytes[key] = msg.bytes[key]!;
      }
      if (byIndex.size > 0)
        throw new HttpError(400, 50035, `files not listed in attachments: ${[...byIndex.keys()]}`);
    }
    if (typeof body.content === 'string') {
      msg.content = body.content;
      applyMentions(msg, body.content, body.allowed_mentions);
    }
    if (Array.isArray(body.embeds)) msg.embeds = body.embeds as APIMessage['embeds'];
    if (Array.isArray(body.components))
      msg.components = body.components as NonNullable<APIMessage['components']>;
    msg.attachments = nextAttachments;
    msg.bytes = nextBytes;
    if (msg.loading) msg.flags = (msg.flags ?? 0) & ~128;
    msg.loading = false;
    msg.edited_timestamp = new Date().toISOString();
  }
}

/** Discord's embed limits (characters counted here as UTF-16 units: stricter than Discord). */
function checkEmbeds(embeds: unknown[]): void {
  if (embeds.length > 10) throw new HttpError(400, 50035, 'more than 10 embeds');
  let total = 0;
  const text = (value: unknown, max: number, what: string) => {
    if (value === undefined) return;
    if (typeof value !== 'string') throw new HttpError(400, 50035, `${what} must be a string`);
    if (value.length > max) throw new HttpError(400, 50035, `${what} longer than ${max}`);
    total += value.length;
  };
  for (const e of embeds as Array<Record<string, unknown>>) {
    text(e.title, 256, 'embed title');
    text(e.description, 4096, 'embed description');
    text((e.footer as { text?: unknown } | undefined)?.text, 2048, 'embed footer');
    text((e.author as { name?: unknown } | undefined)?.name, 256, 'embed author name');
    const fields = (e.fields ?? []) as Array<{ name?: unknown; value?: unknown }>;
    if (fields.length > 25) throw new HttpError(400, 50035, 'more than 25 embed fields');
    for (const f of fields) {
      if (typeof f.name !== 'string' || f.name.length === 0)
        throw new HttpError(400, 50035, 'embed field name required');
      if (typeof f.value !== 'string' || f.value.length === 0)
        throw new HttpError(400, 50035, 'embed field value required');
      text(f.name, 256, 'embed field name');
      text(f.value, 1024, 'embed field value');
    }
  }
  if (total > 6000) throw new HttpError(400, 50035, 'embeds longer than 6000 in total');
}

/**
 * Who a message's content pings, as Discord decides it: without `allowed_mentions` every
 * mention in the content is parsed (including @everyone / @here).
 */
function applyMentions(msg: FakeMessage, content: string, allowed: unknown): void {
  const am = allowed as { parse?: string[]; users?: string[]; roles?: string[] } | undefined;
  const parses = (kind: string) => am === undefined || (am.parse ?? []).includes(kind);
  msg.mention_everyone = /@(everyone|here)/.test(content) && parses('everyone');
  const users = [...content.matchAll(/<@!?(\d+)>/g)].map((m) => m[1]!);
  msg.mentions = users
    .filter((id) => parses('users') || (am?.users ?? []).includes(id))
    .map((id) => ({
      id,
      username: `user${id}`,
      discriminator: '0',
      global_name: null,
      avatar: null,
    }));
  const roles = [...content.matchAll(/<@&(\d+)>/g)].map((m) => m[1]!);
  msg.mention_roles = roles.filter((id) => parses('roles') || (am?.roles ?? []).includes(id));
}

function checkComponents(rows: unknown[]): void {
  if (rows.length > 5) throw new HttpError(400, 50035, 'more than 5 action rows');
  const ids = new Set<string>();
  for (const row of rows as Array<{ type?: number; components?: unknown[] }>) {
    if (row.type !== 1 || !Array.isArray(row.components))
      throw new HttpError(400, 50035, 'top-level components must be action rows');
    if (row.components.length < 1 || row.components.length > 5)
      throw new HttpError(400, 50035, 'an action row holds 1-5 buttons');
    const select = (row.components as Array<{ type?: number }>).find((c) => c.type === 3);
    if (select) {
      if (row.components.length !== 1)
        throw new HttpError(400, 50035, 'a select menu fills its action row alone');
      checkSelect(select as Record<string, unknown>, ids);
      continue;
    }
    for (const c of row.components as Array<{
      type?: number;
      custom_id?: unknown;
      style?: number;
      label?: unknown;
    }>) {
      if (c.type !== 2) throw new HttpError(400, 50035, 'only buttons and string selects here');
      if (typeof c.label === 'string' && c.label.length > 80)
        throw new HttpError(400, 50035, 'button label longer than 80');
      if (c.style === 5) continue;
      if (typeof c.custom_id !== 'string' || c.custom_id.length < 1 || c.custom_id.length > 100)
        throw new HttpError(400, 50035, 'custom_id must be 1-100 characters');
      if (ids.has(c.custom_id)) throw new HttpError(400, 50035, 'duplicate custom_id');
      ids.add(c.custom_id);
    }
  }
}

/** The token of a raw (possibly malformed) interaction body, if it has one. */
function tokenOf(raw: string): string | undefined {
  try {
    const token = (JSON.parse(raw) as { token?: unknown }).token;
    return typeof token === 'string' ? token : undefined;
  } catch {
    return undefined;
  }
}

/** A string select menu, as Discord checks it. */
function checkSelect(c: Record<string, unknown>, ids: Set<string>): void {
  const id = c.custom_id;
  if (typeof id !== 'string' || id.length < 1 || id.length > 100)
    throw new HttpError(400, 50035, 'custom_id must be 1-100 characters');
  if (ids.has(id)) throw new HttpError(400, 50035, 'duplicate custom_id');
  ids.add(id);
  if (typeof c.placeholder === 'string' && c.placeholder.length > 150)
    throw new HttpError(400, 50035, 'placeholder longer than 150');
  const options = c.options as Array<{ label?: unknown; value?: unknown }> | undefined;
  if (!Array.isArray(options) || options.length < 1 || options.length > 25)
    throw new HttpError(400, 50035, 'a select menu has 1-25 options');
  const values = new Set<string>();
  for (const o of options) {
    if (typeof o.label !== 'string' || o.label.length < 1 || o.label.length > 100)
      throw new HttpError(400, 50035, 'option label must be 1-100 characters');
    if (typeof o.value !== 'string' || o.value.length < 1 || o.value.length > 100)
      throw new HttpError(400, 50035, 'option value must be 1-100 characters');
    if (values.has(o.value)) throw new HttpError(400, 50035, 'duplicate option value');
    values.add(o.value);
  }
  const min = (c.min_values as number | undefined) ?? 1;
  const max = (c.max_values as number | undefined) ?? 1;
  if (min < 0 || max > options.length || min > max)
    throw new HttpError(400, 50035, 'min_values/max_values out of range');
}

/** Start a fake Discord on a loopback port. */
export async function startFakeDiscord(opts: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  const fake = new FakeDiscord(opts);
  await fake.listen();
  return fake;
}
