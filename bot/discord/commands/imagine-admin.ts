/**
 * `/imagine-admin …`: moderators change limits, blocked words and channels at runtime.
 * Registered for Manage Server only (`default_member_permissions`), and the member's permissions
 * are re-checked on the relay for every call (a server can re-open the command to anyone).
 * The logic is platform-neutral (bot/moderation/admin.ts); answers are ephemeral.
 */
import {
  type APIApplicationCommandBasicOption,
  type APIApplicationCommandChannelOption,
  type APIApplicationCommandInteractionDataOption,
  ApplicationCommandOptionType,
  ChannelType,
  InteractionContextType,
} from 'discord.js';
import { SAFETY_MODES } from '../../../contracts/safety.ts';
import { type AdminCommand, parseLimitChange } from '../../../moderation/admin.ts';
import { asModeration, runAdminCommand } from '../../../moderation/index.ts';
import { DISCORD_MODERATOR_PERMISSIONS } from '../../../moderation/permissions.ts';
import { LIMIT_FIELDS, type LimitChanges } from '../../../moderation/settings.ts';
import type { SlashCommand } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { interactionUser } from '../jobs.ts';

/** Said when the relay runs a custom admission policy instead of the moderation one. */
export const MODERATION_OFF = 'Moderation commands are not available on this imagine.';

type Option = APIApplicationCommandInteractionDataOption;

const channelOption = (
  required: boolean,
  description: string,
): APIApplicationCommandChannelOption => ({
  type: ApplicationCommandOptionType.Channel,
  name: 'channel',
  description,
  required,
  channel_types: [ChannelType.GuildText, ChannelType.GuildAnnouncement],
});

const SET_OPTIONS: APIApplicationCommandBasicOption[] = [
  {
    type: ApplicationCommandOptionType.Integer,
    name: 'per_user',
    description: 'Images per user per window (0 pauses)',
    min_value: 0,
    max_value: 1_000_000,
  },
  {
    type: ApplicationCommandOptionType.Integer,
    name: 'per_server',
    description: 'Images for the whole server per window',
    min_value: 0,
    max_value: 10_000_000,
  },
  {
    type: ApplicationCommandOptionType.String,
    name: 'window',
    description: 'Window length: 90s, 30m, 1h, 1d',
    max_length: 20,
  },
  {
    type: ApplicationCommandOptionType.Integer,
    name: 'concurrent',
    description: 'Jobs per user at once',
    min_value: 1,
    max_value: 1000,
  },
  {
    type: ApplicationCommandOptionType.Integer,
    name: 'max_queue',
    description: 'Refuse new requests beyond this many queued jobs',
    min_value: 1,
    max_value: 1_000_000,
  },
  {
    type: ApplicationCommandOptionType.Integer,
    name: 'max_side',
    description: 'Largest width or height in pixels',
    min_value: 64,
    max_value: 2048,
  },
  {
    type: ApplicationCommandOptionType.Integer,
    name: 'max_images',
    description: 'Most images one /imagine makes',
    min_value: 1,
    max_value: 4,
  },
  {
    type: ApplicationCommandOptionType.Integer,
    name: 'max_steps',
    description: 'Most denoising steps one request asks for',
    min_value: 1,
    max_value: 50,
  },
  {
    type: ApplicationCommandOptionType.Boolean,
    name: 'builtin_words',
    description: 'Use the built-in blocked words',
  },
  {
    type: ApplicationCommandOptionType.String,
    name: 'safety',
    description: 'What happens to an image the safety classifier flags',
    choices: SAFETY_MODES.map((m) => ({ name: m, value: m })),
  },
  {
    type: ApplicationCommandOptionType.Number,
    name: 'safety_threshold',
    description: 'Classifier score (0–1) from which an image is flagged; 0 flags all',
    min_value: 0,
    max_value: 1,
  },
  {
    type: ApplicationCommandOptionType.String,
    name: 'nsfw_safety',
    description: 'Safety in age-restricted (NSFW) channels; same = as safety',
    choices: [...SAFETY_MODES, 'same'].map((m) => ({ name: m, value: m })),
  },
  {
    type: ApplicationCommandOptionType.Channel,
    name: 'review_channel',
    description: 'Where review holds flagged images for moderators',
    channel_types: [ChannelType.GuildText],
  },
  {
    type: ApplicationCommandOptionType.String,
    name: 'models',
    description: 'Models users may choose, comma-separated, first = default (all = every one)',
    max_length: 1000,
  },
  {
    type: ApplicationCommandOptionType.String,
    name: 'clear',
    description: 'Go back to the default for one setting, or all',
    choices: [
      { name: 'all', value: 'all' },
      ...LIMIT_FIELDS.map((f) => ({ name: f.name, value: f.name })),
    ],
  },
  channelOption(false, 'Only for this channel (an override)'),
];

function optionsOf(option: Option | undefined): Option[] {
  return option && 'options' in option && option.options ? (option.options as Option[]) : [];
}

function optionValue(options: Option[], name: string): string | number | boolean | undefined {
  const opt = options.find((o) => o.name === name);
  return opt && 'value' in opt ? opt.value : undefined;
}

/** Turn the chosen subcommand and its options into a platform-neutral command. */
export function adminCommandFromOptions(top: Option[]): AdminCommand {
  const [first] = top;
  const sub =
    first?.type === ApplicationCommandOptionType.SubcommandGroup ? optionsOf(first)[0] : first;
  const path =
    first?.type === ApplicationCommandOptionType.SubcommandGroup
      ? `${first.name} ${sub?.name}`
      : (first?.name ?? 'help');
  const opts = optionsOf(sub);
  const channel = optionValue(opts, 'channel');
  const channelId = typeof channel === 'string' ? channel : undefined;
  switch (path) {
    case 'show':
      return channelId === undefined ? { verb: 'show' } : { verb: 'show', channelId };
    case 'set': {
      let changes: LimitChanges = {};
      const clear = optionValue(opts, 'clear');
      if (clear === 'all') for (const f of LIMIT_FIELDS) changes = { ...changes, [f.key]: null };
      else if (typeof clear === 'string') changes = parseLimitChange(clear, 'default');
      for (const f of LIMIT_FIELDS) {
        const v = optionValue(opts, f.name);
        if (v === undefined) continue;
        const raw = typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v);
        changes = { ...changes, ...parseLimitChange(f.name, raw) };
      }
      return channelId === undefined
        ? { verb: 'limits', changes }
        : { verb: 'limits', channelId, changes };
    }
    case 'words add':
    case 'words remove': {
      const words = String(optionValue(opts, 'words') ?? '')
        .split(',')
        .map((w) => w.trim())
        .filter(Boolean);
      return { verb: path === 'words add' ? 'words-add' : 'words-remove', words };
    }
    case 'words list':
      return { verb: 'words-list' };
    case 'channels allow':
    case 'channels deny':
      return {
        verb: path === 'channels allow' ? 'channels-allow' : 'channels-deny',
        channelIds: channelId ? [channelId] : [],
      };
    case 'channels clear':
      return { verb: 'channels-clear' };
    default:
      return { verb: 'help' };
  }
}

/** The `/imagine-admin` command. */
export const imagineAdminCommand: SlashCommand = {
  data: {
    name: 'imagine-admin',
    description: 'Moderators: limits, output safety, blocked words and channels for /imagine',
    default_member_permissions: DISCORD_MODERATOR_PERMISSIONS,
    contexts: [InteractionContextType.Guild],
    options: [
      {
        type: ApplicationCommandOptionType.Subcommand,
        name: 'show',
        description: 'Limits, channels, blocked words and recent changes',
        options: [channelOption(false, 'Show the limits that apply in this channel')],
      },
      {
        type: ApplicationCommandOptionType.Subcommand,
        name: 'set',
        description: 'Change limits and output safety for the server, or for one channel',
        options: SET_OPTIONS,
      },
      {
        type: ApplicationCommandOptionType.SubcommandGroup,
        name: 'words',
        description: 'Blocked words and phrases',
        options: [
          {
            type: ApplicationCommandOptionType.Subcommand,
            name: 'add',
            description: 'Block words or phrases (comma-separated; * at either end matches more)',
            options: [
              {
                type: ApplicationCommandOptionType.String,
                name: 'words',
                description: 'e.g. kraken, sea monster, gore*',
                required: true,
                max_length: 1000,
              },
            ],
          },
          {
            type: ApplicationCommandOptionType.Subcommand,
            name: 'remove',
            description: 'Unblock words or phrases (comma-separated)',
            options: [
              {
                type: ApplicationCommandOptionType.String,
                name: 'words',
                description: 'e.g. kraken',
                required: true,
                max_length: 1000,
              },
            ],
          },
          {
            type: ApplicationCommandOptionType.Subcommand,
            name: 'list',
            description: 'List blocked words',
          },
        ],
      },
      {
        type: ApplicationCommandOptionType.SubcommandGroup,
        name: 'channels',
        description: 'Where /imagine may be used',
        options: [
          {
            type: ApplicationCommandOptionType.Subcommand,
            name: 'allow',
            description:
              'Allow /imagine here (once any channel is allowed, only allowed ones work)',
            options: [channelOption(true, 'The channel')],
          },
          {
            type: ApplicationCommandOptionType.Subcommand,
            name: 'deny',
            description: 'Refuse /imagine in a channel',
            options: [channelOption(true, 'The channel')],
          },
          {
            type: ApplicationCommandOptionType.Subcommand,
            name: 'clear',
            description: 'Allow /imagine in every channel again',
          },
        ],
      },
    ],
  },

  async execute(ctx) {
    const policy = asModeration(ctx.deps.admission);
    if (!policy) return tellEphemeral(ctx, MODERATION_OFF);
    const { interaction } = ctx;
    const user = interactionUser(interaction);
    let command: AdminCommand;
    try {
      command = adminCommandFromOptions((interaction.data.options ?? []) as Option[]);
    } catch (err) {
      // A malformed value (e.g. window "soon"): the permission check still comes first.
      const gate = await runAdminCommand(policy, {
        platform: 'discord',
        scopeId: interaction.guild_id,
        actor: { id: user?.id ?? 'unknown' },
        evidence: { platform: 'discord', permissions: interaction.member?.permissions },
        command: { verb: 'help' },
      });
      return tellEphemeral(ctx, gate.ok ? (err as Error).message : gate.text);
    }
    const reply = await runAdminCommand(policy, {
      platform: 'discord',
      scopeId: interaction.guild_id,
      actor: {
        id: user?.id ?? 'unknown',
        ...(user ? { name: user.global_name ?? user.username } : {}),
      },
      // What Discord computed for this member in this channel, sent with the interaction.
      evidence: { platform: 'discord', permissions: interaction.member?.permissions },
      command,
    });
    await tellEphemeral(ctx, reply.text);
  },
};
