/**
 * `npm run discord:register`: register imagine's slash commands (globally, or to one guild for
 * instant updates when DISCORD_GUILD_ID is set) and print the invite URL.
 */
import { fileURLToPath } from 'node:url';
import {
  type APIApplication,
  type APIApplicationCommand,
  OAuth2Scopes,
  PermissionFlagsBits,
  Routes,
} from 'discord.js';
import { loadConfig } from '../../contracts/config.ts';
import { DiscordApi } from './api.ts';
import { imagineCommand, imagineCommandData } from './commands/imagine.ts';
import { slashCommands } from './commands/index.ts';

/**
 * What the bot needs in a channel: see it, post (in threads too: a result after the 15-minute
 * window is a bot message, and threads need their own permission), embed, attach, reply.
 */
export const BOT_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.SendMessagesInThreads |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.ReadMessageHistory;

/** The invite URL with the right scopes and permissions. */
export function inviteUrl(applicationId: string): string {
  const params = new URLSearchParams({
    client_id: applicationId,
    scope: [OAuth2Scopes.Bot, OAuth2Scopes.ApplicationsCommands].join(' '),
    permissions: BOT_PERMISSIONS.toString(),
  });
  return `https://discord.com/oauth2/authorize?${params}`;
}

/** Options of {@link registerCommands}. */
export interface RegisterOptions {
  api: DiscordApi;
  /** Read from the token's application when absent. */
  applicationId?: string | undefined;
  guildId?: string | undefined;
  /** The models offered (`MODELS`): `/imagine`'s `model` option offers them as choices. */
  models?: readonly string[];
}

/** Register every slash command; returns what Discord stored and where. */
export async function registerCommands(
  opts: RegisterOptions,
): Promise<{ applicationId: string; commands: APIApplicationCommand[]; invite: string }> {
  const applicationId =
    opts.applicationId ??
    ((await opts.api.rest.get(Routes.currentApplication())) as APIApplication).id;
  const commands = await opts.api.putCommands(
    applicationId,
    slashCommands.map((c) =>
      c === imagineCommand ? imagineCommandData(opts.models ?? []) : c.data,
    ),
    opts.guildId,
  );
  return { applicationId, commands, invite: inviteUrl(applicationId) };
}

async function main(): Promise<void> {
  const config = loadConfig();
  if (!config.DISCORD_TOKEN) {
    console.error('DISCORD_TOKEN is required to register commands (Bot token from the portal).');
    process.exit(1);
  }
  const api = new DiscordApi({ apiUrl: config.DISCORD_API_URL, token: config.DISCORD_TOKEN });
  const result = await registerCommands({
    api,
    applicationId: config.DISCORD_APPLICATION_ID,
    guildId: config.DISCORD_GUILD_ID,
    models: config.MODELS,
  });
  const where = config.DISCORD_GUILD_ID
    ? `guild ${config.DISCORD_GUILD_ID} (available now)`
    : 'globally (may take up to an hour to appear)';
  console.log(
    `Registered ${result.commands.map((c) => `/${c.name}`).join(', ')} ${where} for application ${result.applicationId}.`,
  );
  console.log(`Invite the bot: ${result.invite}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
