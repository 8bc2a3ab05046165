/**
 * HTTP interactions: `POST /discord/interactions`. The body is verified (Ed25519) before it is
 * parsed; the initial response is the HTTP response, and work that follows it (enqueueing,
 * follow-ups) starts once that response has gone out.
 */
import {
  type APIInteraction,
  type APIInteractionResponse,
  InteractionResponseType,
  InteractionType,
  MessageFlags,
} from 'discord.js';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { ImagineError } from '../../contracts/errors.ts';
import { header } from '../../contracts/headers.ts';
import { type DiscordApi, quietResponse } from './api.ts';
import { type InteractionClaims, MemoryClaims } from './claims.ts';
import { handleInteraction, type InteractionRoutes, interactionContext } from './interactions.ts';
import { parseInteraction } from './payload.ts';
import { discordPublicKey, verifyDiscordSignature } from './verify.ts';

/** Options of {@link discordInteractionsPlugin}. */
export interface DiscordHttpOptions {
  publicKey: string;
  logger: Logger;
  api: DiscordApi;
  routes: InteractionRoutes;
  now?: () => number;
  /** Answer with a deferral if a handler has not responded by then (Discord allows 3 s). */
  responseDeadlineMs?: number;
  /** Seen interaction ids: a signed interaction sent again is answered, not handled again. */
  claims?: InteractionClaims;
}

/** Said to a signed interaction that was already handled (a replay, or a second delivery). */
export const ALREADY_HANDLED = 'This interaction was already handled.';

/** The Fastify plugin serving `POST /discord/interactions`. */
export function discordInteractionsPlugin(opts: DiscordHttpOptions): FastifyPluginAsync {
  const key = discordPublicKey(opts.publicKey);
  const now = opts.now ?? Date.now;
  const claims = opts.claims ?? new MemoryClaims(now);
  return async (app) => {
    // Encapsulated: only this plugin's routes see JSON bodies as raw bytes.
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) =>
      done(null, body),
    );
    app.post('/discord/interactions', { bodyLimit: 1024 * 1024 }, async (request, reply) => {
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      verifyDiscordSignature(
        key,
        {
          signature: header(request, 'x-signature-ed25519'),
          timestamp: header(request, 'x-signature-timestamp'),
        },
        raw,
        now(),
      );
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        throw new ImagineError('INVALID_JSON', 'body is not JSON', { cause: err });
      }
      // Signed but malformed: a 400 naming the field, before any handler reads it.
      const interaction: APIInteraction = parseInteraction(body);
      if (interaction.type !== InteractionType.Ping && !(await claims.claim(interaction.id)))
        return reply.header('content-type', 'application/json').send(
          JSON.stringify(
            quietResponse({
              type: InteractionResponseType.ChannelMessageWithSource,
              data: { content: ALREADY_HANDLED, flags: MessageFlags.Ephemeral },
            }),
          ),
        );

      const { promise: answer, resolve: answerWith } =
        Promise.withResolvers<APIInteractionResponse>();
      const sent = new Promise<void>((resolve) => {
        reply.raw.once('finish', resolve);
        reply.raw.once('close', resolve);
      });
      const ctx = interactionContext(
        interaction,
        {
          api: opts.api,
          submit: app.frontDoor.submit,
          admission: app.frontDoor.admission,
          reviews: app.frontDoor.reviews,
          cancel: (jobId, requester) => app.frontDoor.cancel(jobId, requester),
          logger: opts.logger.child({ reqId: request.id }),
          now,
        },
        async (body) => {
          answerWith(body);
          await sent;
        },
      );
      const handled = handleInteraction(ctx, opts.routes).catch((err) =>
        request.log.error({ err }, 'discord interaction handler failed'),
      );
      const deadline = new Promise<'late'>((resolve) =>
        setTimeout(resolve, opts.responseDeadlineMs ?? 2500, 'late').unref(),
      );
      const first = await Promise.race([answer, deadline, handled.then(() => 'done' as const)]);
      if ((first === 'late' || first === 'done') && !ctx.responded) {
        // Slow handler: defer so the token stays alive. Finished without answering: say so.
        // Not awaited: `respond` resolves once this very response has gone out.
        void ctx.respond(
          first === 'late'
            ? { type: InteractionResponseType.DeferredChannelMessageWithSource }
            : {
                type: InteractionResponseType.ChannelMessageWithSource,
                data: { content: 'Nothing to do.', flags: MessageFlags.Ephemeral },
              },
        );
      }
      return reply
        .header('content-type', 'application/json')
        .send(JSON.stringify(quietResponse(await answer)));
    });
  };
}
