/**
 * Chat adapters (Discord, Slack) plug into the relay through this one shape: a deliverer for
 * results, an optional Fastify plugin for HTTP receivers, and start/stop for long-lived
 * connections (gateway, Socket Mode). Which adapters run is decided by configuration.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { upscaleMaxSide } from '../contracts/backends.ts';
import type { Config } from '../contracts/config.ts';
import type { ChatDeliverer } from '../contracts/delivery.ts';

/** One chat platform's adapter. */
export interface ChatAdapter {
  readonly name: string;
  /** Delivers results and status changes for jobs whose reply target is this platform. */
  deliverer?: ChatDeliverer;
  /** HTTP receivers (`/discord/interactions`, `/slack/events`). */
  plugin?: FastifyPluginAsync;
  /** Called once the relay listens: connect gateways / sockets. `app.frontDoor.submit` enqueues. */
  start?(app: FastifyInstance): Promise<void>;
  stop?(): Promise<void>;
}

/** Context for building adapters. */
export interface AdapterContext {
  config: Readonly<Config>;
  logger: Logger;
}

/** The adapters a configuration enables (none on embedded defaults). */
export async function chatAdaptersFromConfig(ctx: AdapterContext): Promise<ChatAdapter[]> {
  const adapters: ChatAdapter[] = [];
  if (ctx.config.DISCORD_TOKEN || ctx.config.DISCORD_PUBLIC_KEY) {
    const { createDiscordAdapter } = await import('./discord/index.ts');
    adapters.push(
      createDiscordAdapter({
        token: ctx.config.DISCORD_TOKEN,
        publicKey: ctx.config.DISCORD_PUBLIC_KEY,
        apiUrl: ctx.config.DISCORD_API_URL,
        redisUrl: ctx.config.REDIS_URL,
        redisKeyPrefix: ctx.config.REDIS_KEY_PREFIX,
        logger: ctx.logger,
        delivery: { upscaleMaxSide: upscaleMaxSide(ctx.config) },
      }),
    );
  }
  if (
    ctx.config.SLACK_BOT_TOKEN &&
    (ctx.config.SLACK_SIGNING_SECRET || ctx.config.SLACK_APP_TOKEN)
  ) {
    const { slackAdapterFromConfig } = await import('./slack/adapter.ts');
    const slack = slackAdapterFromConfig(ctx.config, ctx.logger);
    if (slack) adapters.push(slack);
  }
  void ctx;
  return adapters;
}
