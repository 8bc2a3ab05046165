/**
 * `/imagine-settings [aspect] [images] [steps] [vary] [visibility] [clear]`: the caller's own
 * defaults for /imagine. No option shows them. Answers are ephemeral.
 */
import {
  type APIApplicationCommandInteractionDataOption,
  ApplicationCommandOptionType,
} from 'discord.js';
import { ASPECT_RATIOS, IMAGE_COUNT_MAX, VARY_STRENGTHS } from '../../../contracts/job.ts';
import {
  asModeration,
  parseUserDefault,
  runUserSettingsCommand,
  type UserSettingsCommand,
  UserSettingsError,
} from '../../../moderation/index.ts';
import { USER_DEFAULT_FIELDS, VISIBILITIES } from '../../../moderation/user-settings.ts';
import type { SlashCommand } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { originOf } from '../jobs.ts';
import { MODERATION_OFF } from './imagine-admin.ts';

type Option = APIApplicationCommandInteractionDataOption;

/** Turn the command's options into a settings command. */
export function userSettingsFromOptions(
  options: readonly Option[] | undefined,
): UserSettingsCommand {
  const given = (options ?? []).filter(
    (o): o is Option & { value: string | number | boolean } => 'value' in o,
  );
  const clear = given.find((o) => o.name === 'clear')?.value;
  if (clear === 'all') return { verb: 'reset' };
  let change = {};
  if (typeof clear === 'string') change = parseUserDefault(clear, 'default');
  for (const o of given) {
    if (o.name === 'clear') continue;
    change = { ...change, ...parseUserDefault(o.name, String(o.value)) };
  }
  return Object.keys(change).length === 0 ? { verb: 'show' } : { verb: 'set', change };
}

/** The `/imagine-settings` command. */
export const imagineSettingsCommand: SlashCommand = {
  data: {
    name: 'imagine-settings',
    description: 'Your own /imagine defaults: aspect, images, steps, vary, who sees results',
    options: [
      {
        type: ApplicationCommandOptionType.String,
        name: 'aspect',
        description: 'Aspect ratio of new images',
        choices: ASPECT_RATIOS.map((a) => ({ name: a, value: a })),
      },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'images',
        description: 'Images per /imagine (the server may allow fewer)',
        min_value: 1,
        max_value: IMAGE_COUNT_MAX,
      },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'steps',
        description: 'Denoising steps (the server may allow fewer)',
        min_value: 1,
        max_value: 50,
      },
      {
        type: ApplicationCommandOptionType.String,
        name: 'vary',
        description: 'What V buttons do',
        choices: Object.keys(VARY_STRENGTHS).map((v) => ({ name: v, value: v })),
      },
      {
        type: ApplicationCommandOptionType.String,
        name: 'visibility',
        description: 'Post results for everyone, or only to you',
        choices: VISIBILITIES.map((v) => ({
          name: v === 'private' ? 'only me' : 'everyone',
          value: v,
        })),
      },
      {
        type: ApplicationCommandOptionType.String,
        name: 'clear',
        description: 'Go back to the server default for one setting, or all',
        choices: [
          { name: 'all', value: 'all' },
          ...USER_DEFAULT_FIELDS.map((f) => ({ name: f.name, value: f.name })),
        ],
      },
    ],
  },

  async execute(ctx) {
    const policy = asModeration(ctx.deps.admission);
    if (!policy) return tellEphemeral(ctx, MODERATION_OFF);
    let command: UserSettingsCommand;
    try {
      command = userSettingsFromOptions(ctx.interaction.data.options);
    } catch (err) {
      if (err instanceof UserSettingsError) return tellEphemeral(ctx, err.message);
      throw err;
    }
    const reply = await runUserSettingsCommand(policy, originOf(ctx.interaction), command, {
      privateSupported: true,
    });
    await tellEphemeral(ctx, reply.text);
  },
};
