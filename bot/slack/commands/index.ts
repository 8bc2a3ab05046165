/**
 * Every slash command the Slack adapter answers, dispatched by name. To add one (e.g.
 * `/imagine-admin`), write `commands/imagine-admin.ts` exporting a {@link SlackCommand},
 * add it to this list, and add the command to `manifest.yaml`.
 */
import type { SlackCommand } from '../types.ts';
import { imagineCommand } from './imagine.ts';
import { imagineAdminCommand } from './imagine-admin.ts';
import { imagineQuotaCommand } from './imagine-quota.ts';
import { imagineSettingsCommand } from './imagine-settings.ts';

/** The default command modules. */
export const slackCommands: readonly SlackCommand[] = [
  imagineCommand,
  imagineAdminCommand,
  imagineQuotaCommand,
  imagineSettingsCommand,
];
