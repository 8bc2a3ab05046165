/** `/imagine prompt:<text> [aspect:<choice>] [seed:<int>]`. */
import {
  type APIApplicationCommandInteractionDataOption,
  ApplicationCommandOptionType,
  InteractionResponseType,
} from 'discord.js';
import { ImagineError } from '../../../contracts/errors.ts';
import { ASPECT_RATIOS, PROMPT_MAX_CHARS } from '../../../contracts/job.ts';
import { parseImagineRequest } from '../../../submit/submit.ts';
import type { SlashCommand } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { submitJob } from '../jobs.ts';
import { refusalText } from '../messages.ts';

function optionValue(
  options: APIApplicationCommandInteractionDataOption[] | undefined,
  name: string,
): unknown {
  const opt = options?.find((o) => o.name === name);
  return opt && 'value' in opt ? opt.value : undefined;
}

/** The `/imagine` command. */
export const imagineCommand: SlashCommand = {
  data: {
    name: 'imagine',
    description: 'Make an image from a prompt',
    options: [
      {
        type: ApplicationCommandOptionType.String,
        name: 'prompt',
        description: 'What to draw',
        required: true,
        max_length: PROMPT_MAX_CHARS,
      },
      {
        type: ApplicationCommandOptionType.String,
        name: 'aspect',
        description: 'Aspect ratio (default 1:1)',
        choices: ASPECT_RATIOS.map((a) => ({ name: a, value: a })),
      },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'seed',
        description: 'Seed, for a repeatable image',
        min_value: 0,
        max_value: 2 ** 32 - 1,
      },
    ],
  },

  async execute(ctx) {
    const options = ctx.interaction.data.options;
    const request: Record<string, unknown> = { prompt: optionValue(options, 'prompt') };
    const aspect = optionValue(options, 'aspect');
    const seed = optionValue(options, 'seed');
    if (aspect !== undefined) request.aspect = aspect;
    if (seed !== undefined) request.seed = seed;
    try {
      // Prompt rules are cheap: refuse before deferring, so the refusal stays private.
      parseImagineRequest(request);
    } catch (err) {
      if (err instanceof ImagineError) return tellEphemeral(ctx, refusalText(err));
      throw err;
    }
    await ctx.respond({ type: InteractionResponseType.DeferredChannelMessageWithSource });
    await submitJob(ctx, request);
  },
};
