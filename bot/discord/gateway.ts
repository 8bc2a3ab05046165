/**
 * Gateway mode: a discord.js client connects with the bot token (no public URL needed) and
 * hands each raw INTERACTION_CREATE to the same handlers HTTP mode uses; the initial response
 * goes through the interaction callback endpoint.
 */
import type { APIInteraction } from 'discord.js';
import {
  Client,
  Events,
  GatewayDispatchEvents,
  GatewayIntentBits,
  InteractionResponseType,
  MessageFlags,
} from 'discord.js';
import type { Logger } from 'pino';
import type { ReviewDesk } from '../../contracts/delivery.ts';
import { asImagineError } from '../../contracts/errors.ts';
import type { AdmissionPolicy, Submitter } from '../../submit/submit.ts';
import type { DiscordApi } from './api.ts';
import { type InteractionClaims, MemoryClaims } from './claims.ts';
import {
  handleInteraction,
  type InteractionDeps,
  type InteractionRoutes,
  interactionContext,
} from './interactions.ts';
import { parseInteraction, replyHandleOf } from './payload.ts';

/** Options of {@link startDiscordGateway}. */
export interface DiscordGatewayOptions {
  token: string;
  apiUrl: string;
  api: DiscordApi;
  routes: InteractionRoutes;
  submit: Submitter;
  admission?: AdmissionPolicy | undefined;
  /** Images held for moderator review. */
  reviews?: ReviewDesk | undefined;
  /** Cancel a job (its Cancel button). */
  cancel?: InteractionDeps['cancel'];
  logger: Logger;
  now?: () => number;
  /** Defer if a handler has not responded by then (Discord allows 3 s), as HTTP mode does. */
  responseDeadlineMs?: number;
  /**
   * Who answers an interaction every session receives: the first instance to claim its id
   * (shared through Redis when several relays run). Default: this process only.
   */
  claims?: InteractionClaims;
}

/** A connected gateway client. */
export interface DiscordGateway {
  client: Client;
  stop(): Promise<void>;
}

/** Connect and resolve once the client is ready. */
export async function startDiscordGateway(opts: DiscordGatewayOptions): Promise<DiscordGateway> {
  const { logger } = opts;
  const now = opts.now ?? Date.now;
  // Guilds is the only intent needed (no privileged ones): interactions arrive regardless.
  const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: opts.apiUrl } });
  const inflight = new Set<Promise<void>>();
  const claims = opts.claims ?? new MemoryClaims(now);
  const track = (p: Promise<void>) => {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };
  client.ws.on(GatewayDispatchEvents.InteractionCreate, (raw: unknown) => {
    let interaction: APIInteraction;
    try {
      interaction = parseInteraction(raw);
    } catch (err) {
      track(refuseMalformed(raw, err));
      return;
    }
    track(
      claims.claim(interaction.id).then((mine) => {
        if (mine) return answer(interaction);
        // Every gateway session receives each interaction: another relay claimed this one.
        logger.debug({ interactionId: interaction.id }, 'interaction claimed by another instance');
      }),
    );
  });

  /** A payload that fails the edge checks: say so to the user when it can be answered at all. */
  async function refuseMalformed(raw: unknown, err: unknown): Promise<void> {
    const coded = asImagineError(err);
    logger.warn({ err: coded }, 'malformed discord interaction');
    const handle = replyHandleOf(raw);
    if (!handle) return;
    if (!(await claims.claim(handle.id))) return;
    await opts.api
      .respond(handle.id, handle.token, {
        type: InteractionResponseType.ChannelMessageWithSource,
        data: {
          content: `⚠️ Discord sent something imagine cannot read (${coded.message}).`,
          flags: MessageFlags.Ephemeral,
        },
      })
      .catch((e) => logger.warn({ err: e }, 'could not answer a malformed interaction'));
  }

  function answer(interaction: APIInteraction): Promise<void> {
    let autoDeferred = false;
    const ctx = interactionContext(
      interaction,
      {
        api: opts.api,
        submit: opts.submit,
        admission: opts.admission,
        reviews: opts.reviews,
        cancel: opts.cancel,
        logger,
        now,
      },
      async (body) => {
        // Already deferred for a slow handler: its own deferral is then a no-op (a second
        // initial response would be refused); anything else goes out as follow-ups.
        if (autoDeferred && body.type === InteractionResponseType.DeferredChannelMessageWithSource)
          return;
        await opts.api.respond(interaction.id, interaction.token, body);
      },
    );
    // A slow handler (a settings store or Redis taking its time) must not let the token die.
    const deadline = setTimeout(() => {
      if (ctx.responded) return;
      ctx
        .respond({ type: InteractionResponseType.DeferredChannelMessageWithSource })
        .catch((err) => logger.warn({ err }, 'could not defer a slow interaction'));
      // Set after: `respond` hands its body to the sender synchronously.
      autoDeferred = true;
    }, opts.responseDeadlineMs ?? 2500);
    return handleInteraction(ctx, opts.routes)
      .catch((err) => logger.error({ err }, 'discord interaction failed'))
      .finally(() => clearTimeout(deadline));
  }
  client.on(Events.ShardError, (err) => logger.warn({ err }, 'discord gateway error'));
  const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
  await client.login(opts.token);
  await ready;
  logger.info({ user: client.user?.tag }, 'discord gateway connected');
  return {
    client,
    async stop() {
      await Promise.allSettled([...inflight]);
      await client.destroy();
    },
  };
}
