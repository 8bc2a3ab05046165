/**
 * HTTP interactions: `POST /discord/interactions`. The body is verified (Ed25519) before it is
 * parsed; the initial response is the HTTP response, and work that follows it (enqueueing,
 * follow-ups) starts once that response has gone out.
 */
import {
  type APIInteraction,
  type APIInteractionResponse,
  InteractionResponseType,
  MessageFlags,
} from 'discord.js';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { ImagineError } from '../../contracts/errors.ts';
import { header } from '../../contracts/headers.ts';
import { type DiscordApi, quietResponse } from './api.ts';
import { handleInteraction, type InteractionRoutes, interactionContext } from './interactions.ts';
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
}

/** The Fastify plugin serving `POST /discord/interactions`. */
export function discordInteractionsPlugin(opts: DiscordHttpOptions): FastifyPluginAsync {
  const key = discordPublicKey(opts.publicKey);
  const now = opts.now ?? Date.now;
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
      let interaction: APIInteraction;
      try {
        interaction = JSON.parse(raw.toString('utf8')) as APIInteraction;
      } catch (err) {
        throw new ImagineError('INVALID_JSON', 'body is not JSON', { cause: err });
      }

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
