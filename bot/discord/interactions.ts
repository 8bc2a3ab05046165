/**
 * One interaction shape for both transports (gateway and HTTP): the raw API interaction plus a
 * `respond` for the initial response. Commands are dispatched by name, buttons by the name at
 * the head of their `custom_id`. Anything that goes wrong is said to the user, ephemerally.
 */
import { DiscordAPIError } from '@discordjs/rest';
import {
  type APIChatInputApplicationCommandInteraction,
  type APIInteraction,
  type APIInteractionResponse,
  type APIMessageComponentInteraction,
  ApplicationCommandType,
  InteractionResponseType,
  InteractionType,
  MessageFlags,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import type { Logger } from 'pino';
import type { ReviewDesk } from '../../contracts/delivery.ts';
import { asImagineError } from '../../contracts/errors.ts';
import type { FrontDoor } from '../../submit/front-door.ts';
import type { AdmissionPolicy, Submitter } from '../../submit/submit.ts';
import type { DiscordApi } from './api.ts';
import { decodeCustomId } from './custom-id.ts';
import { refusalText } from './messages.ts';

/** What handlers need besides the interaction. */
export interface InteractionDeps {
  api: DiscordApi;
  submit: Submitter;
  /** The relay's admission policy (`/imagine-admin`, `/imagine-quota` read and change it). */
  admission?: AdmissionPolicy | undefined;
  /** Images held for moderator review (the Approve / Reject buttons). */
  reviews?: ReviewDesk | undefined;
  /** Cancel a job (the Cancel button on its status message). */
  cancel?: FrontDoor['cancel'] | undefined;
  logger: Logger;
  now: () => number;
}

/** An interaction being handled. `respond` sends the initial response (once). */
export interface InteractionContext<I extends APIInteraction = APIInteraction> {
  interaction: I;
  deps: InteractionDeps;
  respond(body: APIInteractionResponse): Promise<void>;
  /** True once `respond` was called. */
  readonly responded: boolean;
  /** True when the initial response was a deferral (the original message exists). */
  readonly deferred: boolean;
  /**
   * Set when Discord refused the initial response: `taken` (40060, another instance answered
   * first: the original message is theirs) or `gone` (10062, too late or unknown). Nothing more
   * may be sent for this interaction, and nothing may be deleted.
   */
  readonly lost: 'taken' | 'gone' | undefined;
}

/** Discord's codes for an initial response that cannot be given. */
const ALREADY_ACKNOWLEDGED = 40060;
const UNKNOWN_INTERACTION = 10062;

/** The initial response was refused: another instance has the interaction, or it is gone. */
export class InteractionLost extends Error {
  readonly reason: 'taken' | 'gone';
  constructor(reason: 'taken' | 'gone', cause: unknown) {
    super(
      reason === 'taken'
        ? 'interaction already acknowledged (another instance answered it)'
        : 'interaction unknown or expired before it was answered',
      { cause },
    );
    this.name = 'InteractionLost';
    this.reason = reason;
  }
}

/** A slash command: its registration data and its handler. One module each. */
export interface SlashCommand {
  data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  execute(ctx: InteractionContext<APIChatInputApplicationCommandInteraction>): Promise<void>;
}

/** A button (or other component) handler, keyed by the name heading its `custom_id`. */
export interface ComponentHandler {
  name: string;
  execute(ctx: InteractionContext<APIMessageComponentInteraction>, args: string[]): Promise<void>;
}

/** The dispatch tables. */
export interface InteractionRoutes {
  commands: ReadonlyMap<string, SlashCommand>;
  components: ReadonlyMap<string, ComponentHandler>;
}

/** Build dispatch tables from lists of modules. */
export function routesOf(
  commands: readonly SlashCommand[],
  components: readonly ComponentHandler[],
): InteractionRoutes {
  return {
    commands: new Map(commands.map((c) => [c.data.name, c])),
    components: new Map(components.map((c) => [c.name, c])),
  };
}

/** Wrap a transport's respond function so handlers can ask whether (and how) it answered. */
export function interactionContext(
  interaction: APIInteraction,
  deps: InteractionDeps,
  send: (body: APIInteractionResponse) => Promise<void>,
): InteractionContext {
  let responded = false;
  let deferred = false;
  let lost: 'taken' | 'gone' | undefined;
  return {
    interaction,
    deps,
    get responded() {
      return responded;
    },
    get deferred() {
      return deferred;
    },
    get lost() {
      return lost;
    },
    async respond(body) {
      if (lost) throw new InteractionLost(lost, undefined);
      responded = true;
      deferred =
        body.type === InteractionResponseType.DeferredChannelMessageWithSource ||
        body.type === InteractionResponseType.DeferredMessageUpdate;
      try {
        await send(body);
      } catch (err) {
        const code = err instanceof DiscordAPIError ? err.code : undefined;
        if (code === ALREADY_ACKNOWLEDGED || code === UNKNOWN_INTERACTION) {
          lost = code === ALREADY_ACKNOWLEDGED ? 'taken' : 'gone';
          deferred = false;
          throw new InteractionLost(lost, err);
        }
        throw err;
      }
    },
  };
}

/** Say something to the interacting user only, whatever state the interaction is in. */
export async function tellEphemeral(
  ctx: InteractionContext,
  content: string,
  opts: { keepOriginal?: boolean } = {},
): Promise<void> {
  const { interaction, deps } = ctx;
  // Refused initial response: the message (if any) belongs to whoever answered; say nothing.
  if (ctx.lost) return;
  if (!ctx.responded) {
    await ctx.respond({
      type: InteractionResponseType.ChannelMessageWithSource,
      data: { content, flags: MessageFlags.Ephemeral },
    });
    return;
  }
  if (ctx.deferred && !opts.keepOriginal) {
    // The first follow-up after a deferral would replace the "thinking" message (and be public):
    // remove that message first so the follow-up stands alone, ephemeral.
    await deps.api
      .deleteMessage(interaction.application_id, interaction.token)
      .catch((err) => deps.logger.debug({ err }, 'could not delete the deferred response'));
  }
  await deps.api.followUp(interaction.application_id, interaction.token, {
    content,
    flags: MessageFlags.Ephemeral,
  });
}

/** Handle one interaction: dispatch, and turn any error into an ephemeral message. */
export async function handleInteraction(
  ctx: InteractionContext,
  routes: InteractionRoutes,
): Promise<void> {
  const { interaction, deps } = ctx;
  try {
    if (interaction.type === InteractionType.Ping) {
      await ctx.respond({ type: InteractionResponseType.Pong });
      return;
    }
    if (
      interaction.type === InteractionType.ApplicationCommand &&
      interaction.data.type === ApplicationCommandType.ChatInput
    ) {
      const command = routes.commands.get(interaction.data.name);
      if (!command) {
        await tellEphemeral(ctx, `Unknown command /${interaction.data.name}.`);
        return;
      }
      await command.execute(ctx as InteractionContext<APIChatInputApplicationCommandInteraction>);
      return;
    }
    if (interaction.type === InteractionType.MessageComponent) {
      const { name, args } = decodeCustomId(interaction.data.custom_id);
      const handler = routes.components.get(name);
      if (!handler) {
        await tellEphemeral(ctx, 'This button is no longer supported. Run /imagine again.');
        return;
      }
      await handler.execute(ctx as InteractionContext<APIMessageComponentInteraction>, args);
      return;
    }
    if (!ctx.responded) await tellEphemeral(ctx, 'This interaction is not supported.');
  } catch (err) {
    if (err instanceof InteractionLost) {
      // Not a failure of ours: another instance has it (40060), or it timed out (10062).
      deps.logger[err.reason === 'taken' ? 'info' : 'warn'](
        { interactionId: interaction.id, reason: err.reason },
        err.message,
      );
      return;
    }
    const coded = asImagineError(err);
    deps.logger.error({ err, interactionId: interaction.id }, 'discord interaction failed');
    await tellEphemeral(ctx, refusalText(coded)).catch((e) =>
      deps.logger.warn({ err: e }, 'could not tell the user about a failure'),
    );
  }
}
