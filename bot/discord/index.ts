/**
 * The Discord adapter: the deliverer, the HTTP interactions plugin (when a public key is set)
 * and the gateway client (when a bot token is set), all on one REST client.
 */
import type { Logger } from 'pino';
import type { ChatAdapter } from '../adapters.ts';
import { DiscordApi } from './api.ts';
import { interactionClaims } from './claims.ts';
import { slashCommands } from './commands/index.ts';
import { componentHandlers } from './components/index.ts';
import { DiscordDeliverer, type DiscordDelivererOptions } from './deliverer.ts';
import { type DiscordGateway, startDiscordGateway } from './gateway.ts';
import { discordInteractionsPlugin } from './http.ts';
import { type InteractionRoutes, routesOf } from './interactions.ts';

/** Options of {@link createDiscordAdapter}. */
export interface DiscordAdapterOptions {
  /** Bot token: gateway mode, and channel delivery after the token window. */
  token?: string | undefined;
  /** Application public key (hex): HTTP mode. */
  publicKey?: string | undefined;
  /** Base URL of the REST API, without version. */
  apiUrl: string;
  logger: Logger;
  now?: () => number;
  /** Dispatch tables; defaults to every command and component module. */
  routes?: InteractionRoutes;
  /** Shared Redis: interaction claims (one relay answers each interaction). */
  redisUrl?: string | undefined;
  redisKeyPrefix?: string | undefined;
  /** Deliverer tuning (throttle, token margin). */
  delivery?: Omit<DiscordDelivererOptions, 'api' | 'logger' | 'now'>;
}

/** The dispatch tables of every command and component module. */
export function defaultDiscordRoutes(): InteractionRoutes {
  return routesOf(slashCommands, componentHandlers);
}

/** Build the Discord adapter. */
export function createDiscordAdapter(opts: DiscordAdapterOptions): ChatAdapter {
  const logger = opts.logger.child({ adapter: 'discord' });
  const now = opts.now ?? Date.now;
  const api = new DiscordApi({ apiUrl: opts.apiUrl, token: opts.token });
  const routes = opts.routes ?? defaultDiscordRoutes();
  let gateway: DiscordGateway | undefined;
  const token = opts.token;
  const claims = interactionClaims({
    redisUrl: opts.redisUrl,
    keyPrefix: opts.redisKeyPrefix,
    logger,
    now,
  });
  return {
    name: 'discord',
    deliverer: new DiscordDeliverer({ api, logger, now, ...opts.delivery }),
    ...(opts.publicKey
      ? {
          plugin: discordInteractionsPlugin({
            publicKey: opts.publicKey,
            api,
            routes,
            now,
            logger,
            claims,
          }),
        }
      : {}),
    ...(token
      ? {
          async start(app) {
            gateway = await startDiscordGateway({
              token,
              apiUrl: opts.apiUrl,
              api,
              routes,
              // Read at each interaction, as HTTP mode does: the front door may be re-decorated.
              submit: (submission) => app.frontDoor.submit(submission),
              admission: app.frontDoor.admission,
              reviews: app.frontDoor.reviews,
              cancel: (jobId, requester) => app.frontDoor.cancel(jobId, requester),
              logger,
              now,
              claims,
            });
          },
        }
      : {}),
    async stop() {
      await gateway?.stop();
      gateway = undefined;
      await claims.close();
    },
  };
}
