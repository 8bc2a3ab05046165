/**
 * The Slack adapter: a Bolt app whose listeners dispatch slash commands by name and buttons by
 * action id to their modules, received over HTTP on the relay (`POST /slack/events`, signed
 * with SLACK_SIGNING_SECRET) or over Socket Mode (SLACK_APP_TOKEN, no public URL), plus the
 * deliverer that answers jobs in Slack. Every Web API call goes to SLACK_API_URL.
 */
import { App, LogLevel, type Receiver, SocketModeReceiver } from '@slack/bolt';
import type { Logger as SlackLogger } from '@slack/logger';
import { WebClient, type WebClientOptions } from '@slack/web-api';
import type { Logger } from 'pino';
import { upscaleMaxSide } from '../../contracts/backends.ts';
import type { Config } from '../../contracts/config.ts';
import type { FrontDoor } from '../../submit/front-door.ts';
import type { ChatAdapter } from '../adapters.ts';
import { slackActions } from './actions/index.ts';
import { slackCommands } from './commands/index.ts';
import { SlackDeliverer } from './deliverer.ts';
import { MemorySeenEvents, RedisSeenEvents, type SeenEvents } from './event-ids.ts';
import { registerAppHome } from './events/app-home.ts';
import { registerDirectMessages } from './events/direct-message.ts';
import { SlackRateBudget } from './rate-budget.ts';
import { FastifySlackReceiver } from './receiver.ts';
import { adviceFor, ResponseUrlTracker, tellUser } from './replies.ts';
import { registerImagineFromImage } from './shortcuts/imagine-from-image.ts';
import type { SlackAction, SlackCommand, SlackEnv } from './types.ts';

/** Options of {@link createSlackAdapter}. */
export interface SlackAdapterOptions {
  botToken: string;
  /** HTTP mode: verifies `POST /slack/events`. */
  signingSecret?: string | undefined;
  /** Socket Mode (wins over HTTP when both are set). */
  appToken?: string | undefined;
  apiUrl: string;
  logger: Logger;
  commands?: readonly SlackCommand[];
  actions?: readonly SlackAction[];
  /** Web API retries (429s are always waited out for `Retry-After`). */
  retryConfig?: WebClientOptions['retryConfig'];
  now?: () => number;
  /** Where Events API ids are remembered (repeats start no second job); memory by default. */
  seenEvents?: SeenEvents;
  /** Counts Web API calls against Slack's method tiers. */
  budget?: SlackRateBudget;
  /** Largest upscale the generators make (`upscaleMaxSide`): no Upscale button past it. */
  upscaleMaxSide?: number;
}

/** Bolt and the web-api client log through pino. */
function slackLogger(logger: Logger): SlackLogger {
  let level = LogLevel.INFO;
  return {
    debug: (...msg) => logger.debug(msg.map(String).join(' ')),
    info: (...msg) => logger.info(msg.map(String).join(' ')),
    warn: (...msg) => logger.warn(msg.map(String).join(' ')),
    error: (...msg) => logger.error(msg.map(String).join(' ')),
    setLevel: (l) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

/** The Web API client options every Slack call uses. */
export function slackClientOptions(opts: SlackAdapterOptions): WebClientOptions {
  return {
    slackApiUrl: opts.apiUrl,
    logger: slackLogger(opts.logger),
    // Rate limits are waited out (Retry-After), not thrown: this is the default, stated here
    // because delivery depends on it.
    rejectRateLimitedCalls: false,
    retryConfig: opts.retryConfig ?? { retries: 5, factor: 2, minTimeout: 500, maxTimeout: 30_000 },
    timeout: 60_000,
  };
}

/** Build the Slack adapter. */
export function createSlackAdapter(opts: SlackAdapterOptions): ChatAdapter {
  const logger = opts.logger.child({ adapter: 'slack' });
  const clientOptions = slackClientOptions({ ...opts, logger });
  const client = new WebClient(opts.botToken, clientOptions);
  // Droppable status edits: a 429 is thrown at once (and the edit dropped) instead of pausing
  // this client's queue, which is its own, so results on `client` never wait behind one.
  const droppableClient = new WebClient(opts.botToken, {
    ...clientOptions,
    rejectRateLimitedCalls: true,
    retryConfig: { retries: 0 },
    timeout: 10_000,
  });
  const now = opts.now ?? Date.now;
  const budget = opts.budget ?? new SlackRateBudget({ now });
  const responseUrls = new ResponseUrlTracker();
  const seenEvents = opts.seenEvents ?? new MemorySeenEvents();
  let relay: FrontDoor | undefined;
  const attach = (r: FrontDoor) => {
    relay = r;
  };
  const env: SlackEnv = {
    client,
    logger,
    now,
    responseUrls,
    budget,
    relay() {
      if (!relay) throw new Error('the Slack adapter is not attached to a relay yet');
      return relay;
    },
  };

  const socketMode = Boolean(opts.appToken);
  let receiver: Receiver;
  let httpReceiver: FastifySlackReceiver | undefined;
  if (socketMode) {
    receiver = new SocketModeReceiver({
      appToken: opts.appToken!,
      logger: slackLogger(logger),
      installerOptions: { clientOptions },
    });
  } else {
    if (!opts.signingSecret) throw new Error('Slack HTTP mode needs SLACK_SIGNING_SECRET');
    httpReceiver = new FastifySlackReceiver({
      signingSecret: opts.signingSecret,
      logger,
      onRelay: attach,
      ...(opts.now ? { now: opts.now } : {}),
    });
    receiver = httpReceiver;
  }

  const bolt = new App({
    token: opts.botToken,
    receiver,
    clientOptions,
    logger: slackLogger(logger),
    // auth.test runs in start(): a wrong token stops start-up with invalid_auth.
    deferInitialization: true,
  });
  bolt.error(async (err) => {
    logger.error({ err }, 'slack listener error');
  });
  // Events API repeats (X-Slack-Retry-Num, same event_id) were already handled: the first
  // delivery was acked, so the repeat is acked (Bolt does, before middleware) and dropped.
  bolt.use(async ({ body, next }) => {
    const eventId = (body as { event_id?: unknown }).event_id;
    if (typeof eventId === 'string' && !(await seenEvents.firstTime(eventId))) {
      logger.info({ eventId }, 'slack event repeated; already handled');
      return;
    }
    await next();
  });

  for (const command of opts.commands ?? slackCommands) {
    bolt.command(command.name, async ({ command: payload, ack, respond }) => {
      try {
        await command.handle({ command: payload, ack, respond, env });
      } catch (err) {
        logger.error({ err, command: command.name }, 'slack command failed');
        await tellUser(
          client,
          logger,
          {
            channelId: payload.channel_id,
            userId: payload.user_id,
            responseUrl: payload.response_url,
          },
          adviceFor({ code: 'INTERNAL', message: 'the command failed' }),
          { responseUrls },
        );
      }
    });
  }
  for (const action of opts.actions ?? slackActions) {
    bolt.action({ type: 'block_actions', action_id: action.actionId }, async (args) => {
      const body = args.body;
      try {
        if (args.action.type !== 'button') return await args.ack();
        await action.handle({
          body,
          action: args.action,
          ack: args.ack,
          respond: args.respond,
          env,
        });
      } catch (err) {
        logger.error({ err, action: String(action.actionId) }, 'slack action failed');
        await tellUser(
          client,
          logger,
          {
            channelId: body.container?.channel_id ?? body.user.id,
            userId: body.user.id,
            responseUrl: body.response_url,
          },
          adviceFor({ code: 'INTERNAL', message: 'the button failed' }),
          { responseUrls },
        );
      }
    });
  }
  registerDirectMessages(bolt, env);
  registerAppHome(bolt, env);
  registerImagineFromImage(bolt, env);

  const deliverer = new SlackDeliverer({
    client,
    droppableClient,
    logger,
    budget,
    responseUrls,
    now,
    isDemo: (generator) => (generator ?? relay?.generator.name) === 'demo',
    ...(opts.upscaleMaxSide !== undefined ? { upscaleMaxSide: opts.upscaleMaxSide } : {}),
  });

  return {
    name: 'slack',
    deliverer,
    ...(httpReceiver ? { plugin: httpReceiver.plugin } : {}),
    async start(app) {
      attach(app.frontDoor);
      try {
        await bolt.init();
      } catch (err) {
        const code = (err as { data?: { error?: string } }).data?.error ?? String(err);
        throw new Error(`SLACK_BOT_TOKEN: Slack auth.test failed (${code})`, { cause: err });
      }
      if (socketMode) await bolt.start();
      logger.info({ mode: socketMode ? 'socket' : 'http' }, 'slack app ready');
    },
    async stop() {
      if (socketMode) await bolt.stop();
      await seenEvents.close();
    },
  };
}

/** The Slack adapter a configuration asks for, or undefined when Slack is not configured. */
export function slackAdapterFromConfig(
  config: Readonly<Config>,
  logger: Logger,
): ChatAdapter | undefined {
  if (!config.SLACK_BOT_TOKEN || !(config.SLACK_SIGNING_SECRET || config.SLACK_APP_TOKEN))
    return undefined;
  return createSlackAdapter({
    botToken: config.SLACK_BOT_TOKEN,
    signingSecret: config.SLACK_SIGNING_SECRET,
    appToken: config.SLACK_APP_TOKEN,
    apiUrl: config.SLACK_API_URL,
    logger,
    upscaleMaxSide: upscaleMaxSide(config),
    ...(config.REDIS_URL
      ? { seenEvents: new RedisSeenEvents(config.REDIS_URL, config.REDIS_KEY_PREFIX, logger) }
      : {}),
  });
}
