/**
 * The shapes Slack command, action and event modules implement. One module per command or
 * action, dispatched by name (`/imagine`) or action id (`imagine_reroll`): adding a command is
 * one new file and one line in `commands/index.ts`.
 */
import type {
  AckFn,
  BlockAction,
  ButtonAction,
  RespondArguments,
  RespondFn,
  SlashCommand,
} from '@slack/bolt';
import type { WebClient } from '@slack/web-api';
import type { Logger } from 'pino';
import type { FrontDoor } from '../../submit/front-door.ts';
import type { SlackRateBudget } from './rate-budget.ts';
import type { ResponseUrlTracker } from './replies.ts';

/** What every Slack module is handed besides its payload. */
export interface SlackEnv {
  /** The bot's Web API client (SLACK_API_URL, Retry-After honoured). */
  client: WebClient;
  /** The relay this adapter runs in: `submit`, `config`, `generator`. Throws before attach. */
  relay(): FrontDoor;
  logger: Logger;
  now(): number;
  /** Uses of each response_url (Slack: 5 within 30 minutes). */
  responseUrls: ResponseUrlTracker;
  /** Web API calls counted against Slack's method tiers (shared with the deliverer). */
  budget: SlackRateBudget;
}

/** Arguments of a slash command handler. */
export interface SlackCommandArgs {
  command: SlashCommand;
  /** Must be called within 3 s; a body (text or blocks) is shown to the user only. */
  ack: AckFn<string | RespondArguments>;
  /** Reply through the command's response_url (ephemeral unless `response_type: 'in_channel'`). */
  respond: RespondFn;
  env: SlackEnv;
}

/** A slash command module, e.g. `/imagine`, `/imagine-admin`, `/imagine-quota`. */
export interface SlackCommand {
  /** The command as Slack sends it, with the slash: `/imagine`. */
  readonly name: string;
  handle(args: SlackCommandArgs): Promise<void>;
}

/** Arguments of a button handler. */
export interface SlackActionArgs {
  body: BlockAction;
  action: ButtonAction;
  ack: AckFn<void>;
  respond: RespondFn;
  env: SlackEnv;
}

/** A button module, dispatched on `action_id` (a pattern for a family: `imagine_upscale_2`). */
export interface SlackAction {
  readonly actionId: string | RegExp;
  handle(args: SlackActionArgs): Promise<void>;
}
