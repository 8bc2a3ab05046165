/**
 * Every slash command, one module each. Add a command by importing its module here; the
 * dispatcher and `npm run discord:register` both read this list.
 */
import type { SlashCommand } from '../interactions.ts';
import { imagineCommand } from './imagine.ts';
import { imagineAdminCommand } from './imagine-admin.ts';
import { imagineQuotaCommand } from './imagine-quota.ts';
import { imagineSettingsCommand } from './imagine-settings.ts';

/** The slash commands imagine serves and registers. */
export const slashCommands: SlashCommand[] = [
  imagineCommand,
  imagineAdminCommand,
  imagineQuotaCommand,
  imagineSettingsCommand,
];
