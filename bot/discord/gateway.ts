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
} from 'discord.js';
import type { Logger } from 'pino';
import type { AdmissionPolicy, Submitter } from '../../submit/submit.ts';
import type { DiscordApi } from './api.ts';
import { handleInteraction, type InteractionRoutes, interactionContext } from './interactions.ts';

/** Options of {@link startDiscordGateway}. */
export interface DiscordGatewayOptions {
  token: string;
  apiUrl: string;
  api: DiscordApi;
  routes: InteractionRoutes;
  submit: Submitter;
  admission?: AdmissionPolicy | undefined;
  logger: Logger;
  now?: () => number;
  /** Defer if a handler has not responded by then (Discord allows 3 s), as HTTP mode does. */
  responseDeadlineMs?: number;
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
  client.ws.on(GatewayDispatchEvents.InteractionCreate, (interaction: APIInteraction) => {
    let autoDeferred = false;
    const ctx = interactionContext(
      interaction,
      { api: opts.api, submit: opts.submit, admission: opts.admission, logger, now },
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
    const p = handleInteraction(ctx, opts.routes)
      .catch((err) => logger.error({ err }, 'discord interaction failed'))
      .finally(() => {
        clearTimeout(deadline);
        inflight.delete(p);
      });
    inflight.add(p);
  });
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
