/**
 * The Discord REST calls imagine makes, in one place, over `@discordjs/rest` (which waits out
 * 429s on `Retry-After` and per-route buckets). Interaction endpoints need no bot token; channel
 * messages and command registration do.
 */
import { DiscordAPIError, type RawFile, REST } from '@discordjs/rest';
import {
  type APIApplicationCommand,
  type APIGuild,
  type APIInteractionResponse,
  type APIMessage,
  InteractionResponseType,
  type RESTPatchAPIWebhookWithTokenMessageJSONBody,
  type RESTPostAPIApplicationCommandsJSONBody,
  type RESTPostAPIChannelMessageJSONBody,
  type RESTPostAPIWebhookWithTokenJSONBody,
  Routes,
} from 'discord.js';
import { ImagineError } from '../../contracts/errors.ts';

/** A file attached from memory. */
export interface DiscordFile {
  name: string;
  data: Buffer;
  contentType: string;
}

/** Options of {@link DiscordApi}. */
export interface DiscordApiOptions {
  /** Base URL without the version (`https://discord.com/api`). */
  apiUrl: string;
  /** Bot token: channel messages after the 15-minute window, command registration. */
  token?: string | undefined;
  /** Injected REST client (tests); built from the above when absent. */
  rest?: REST;
}

function rawFiles(files: DiscordFile[] | undefined): RawFile[] | undefined {
  return files?.map((f) => ({ name: f.name, data: f.data, contentType: f.contentType }));
}

/**
 * Without `allowed_mentions` Discord parses every mention in `content`, @everyone included, and
 * content can carry text that is not ours (an error echoing a prompt): ping nobody unless the
 * call names who.
 */
function quiet<T extends { allowed_mentions?: unknown }>(body: T): T {
  return body.allowed_mentions ? body : { ...body, allowed_mentions: { parse: [] } };
}

/** Discord error codes imagine reacts to. */
export const DISCORD_ERRORS = {
  unknownWebhook: 10015,
  unknownMessage: 10008,
  unknownInteraction: 10062,
  invalidWebhookToken: 50027,
  requestEntityTooLarge: 40005,
  missingAccess: 50001,
  missingPermissions: 50013,
  alreadyAcknowledged: 40060,
} as const;

/**
 * Whether a webhook call says the interaction's webhook or message is gone for good: any 404
 * (10008 message deleted, 10015 unknown webhook, 10062 unknown interaction) or a dead token.
 * Calling that webhook again cannot succeed.
 */
export function isWebhookGone(err: unknown): boolean {
  return isTokenGone(err) || (err instanceof DiscordAPIError && err.status === 404);
}

/** Whether Discord refused a channel post for the bot's permissions there (50001 / 50013). */
export function isMissingPermission(err: unknown): boolean {
  return (
    err instanceof DiscordAPIError &&
    (err.code === DISCORD_ERRORS.missingAccess || err.code === DISCORD_ERRORS.missingPermissions)
  );
}

/** Whether an error says the interaction token no longer works (expired or unknown). */
export function isTokenGone(err: unknown): boolean {
  if (!(err instanceof DiscordAPIError)) return false;
  return (
    err.code === DISCORD_ERRORS.invalidWebhookToken ||
    err.code === DISCORD_ERRORS.unknownWebhook ||
    err.code === DISCORD_ERRORS.unknownInteraction ||
    err.status === 401
  );
}

/** Whether an error says an upload was too large. */
export function isTooLarge(err: unknown): boolean {
  const e = err as { code?: unknown; status?: unknown } | null;
  return e?.code === DISCORD_ERRORS.requestEntityTooLarge || e?.status === 413;
}

/**
 * A Discord failure as a coded error for logs: status, Discord code and route, never the
 * interaction token (it is a credential) nor the request body (it may hold megabytes of image).
 */
export function deliveryError(err: unknown): ImagineError {
  if (err instanceof ImagineError) return err;
  if (err instanceof DiscordAPIError) {
    const route = new URL(err.url).pathname.replace(
      /\/webhooks\/(\d+)\/[^/]+/,
      '/webhooks/$1/:token',
    );
    const coded = new ImagineError(
      'DELIVERY_FAILED',
      `discord ${err.method.toUpperCase()} ${route}: ${err.status} ${err.code} ${err.message}`,
    );
    return Object.assign(coded, { status: err.status, discordCode: err.code });
  }
  return new ImagineError('DELIVERY_FAILED', err instanceof Error ? err.message : String(err));
}

/** An interaction response whose message (if it carries one) pings nobody; see {@link quiet}. */
export function quietResponse(body: APIInteractionResponse): APIInteractionResponse {
  if (body.type === InteractionResponseType.ChannelMessageWithSource)
    return { ...body, data: quiet(body.data) };
  if (body.type === InteractionResponseType.UpdateMessage)
    return { ...body, data: quiet(body.data ?? {}) };
  return body;
}

/** Thin, typed wrapper over the endpoints imagine uses. */
export class DiscordApi {
  readonly rest: REST;
  readonly hasToken: boolean;

  constructor(opts: DiscordApiOptions) {
    this.rest = opts.rest ?? new REST({ api: opts.apiUrl, version: '10' });
    if (opts.token) this.rest.setToken(opts.token);
    this.hasToken = Boolean(opts.token);
  }

  /** Answer an interaction (gateway mode; HTTP mode answers in the HTTP response). */
  async respond(interactionId: string, token: string, body: APIInteractionResponse): Promise<void> {
    await this.rest.post(Routes.interactionCallback(interactionId, token), {
      body: quietResponse(body),
      auth: false,
    });
  }

  /** Fetch a message sent through the interaction webhook (`@original` by default). */
  async getMessage(appId: string, token: string, messageId = '@original'): Promise<APIMessage> {
    return (await this.rest.get(Routes.webhookMessage(appId, token, messageId), {
      auth: false,
    })) as APIMessage;
  }

  /** Edit the original response or a follow-up; `files` go as `files[n]` next to `payload_json`. */
  async editMessage(
    appId: string,
    token: string,
    messageId: string,
    body: RESTPatchAPIWebhookWithTokenMessageJSONBody,
    files?: DiscordFile[],
  ): Promise<APIMessage> {
    const raw = rawFiles(files);
    return (await this.rest.patch(Routes.webhookMessage(appId, token, messageId), {
      body: quiet(body),
      auth: false,
      ...(raw ? { files: raw } : {}),
    })) as APIMessage;
  }

  /** Delete the original response or a follow-up. */
  async deleteMessage(appId: string, token: string, messageId = '@original'): Promise<void> {
    await this.rest.delete(Routes.webhookMessage(appId, token, messageId), { auth: false });
  }

  /** Send a follow-up message (with `files` as on an edit). */
  async followUp(
    appId: string,
    token: string,
    body: RESTPostAPIWebhookWithTokenJSONBody,
    files?: DiscordFile[],
  ): Promise<APIMessage> {
    const raw = rawFiles(files);
    return (await this.rest.post(Routes.webhook(appId, token), {
      body: quiet(body),
      auth: false,
      ...(raw ? { files: raw } : {}),
    })) as APIMessage;
  }

  /** Post to a channel with the bot token. */
  async channelMessage(
    channelId: string,
    body: RESTPostAPIChannelMessageJSONBody,
    files?: DiscordFile[],
  ): Promise<APIMessage> {
    const raw = rawFiles(files);
    return (await this.rest.post(Routes.channelMessages(channelId), {
      body: quiet(body),
      ...(raw ? { files: raw } : {}),
    })) as APIMessage;
  }

  /** A guild, with the bot token (its `premium_tier` decides what bot messages may carry). */
  async getGuild(guildId: string): Promise<APIGuild> {
    return (await this.rest.get(Routes.guild(guildId))) as APIGuild;
  }

  /** Replace the application's commands, globally or in one guild (instant). */
  async putCommands(
    appId: string,
    commands: RESTPostAPIApplicationCommandsJSONBody[],
    guildId?: string,
  ): Promise<APIApplicationCommand[]> {
    const route = guildId
      ? Routes.applicationGuildCommands(appId, guildId)
      : Routes.applicationCommands(appId);
    return (await this.rest.put(route, { body: commands })) as APIApplicationCommand[];
  }
}
