/**
 * `/imagine prompt:<text> [image:<attachment>] [strength:subtle|strong] [count:1-4]
 * [aspect:<choice>] [seed:<int>] [model:<choice>]`. With an image the prompt guides an image-to-image job from
 * it; the attachment is referenced by its URL (Discord's CDN) and fetched by the worker.
 */
import {
  type APIApplicationCommandInteractionDataOption,
  type APIAttachment,
  type APIChatInputApplicationCommandInteraction,
  ApplicationCommandOptionType,
  InteractionResponseType,
  MessageFlags,
} from 'discord.js';
import { ImagineError } from '../../../contracts/errors.ts';
import { IMAGE_TYPES } from '../../../contracts/image-types.ts';
import {
  ASPECT_RATIOS,
  IMAGE_COUNT_MAX,
  PROMPT_MAX_CHARS,
  VARY_STRENGTHS,
} from '../../../contracts/job.ts';
import { asModeration } from '../../../moderation/index.ts';
import { parseImagineRequest } from '../../../submit/submit.ts';
import type { SlashCommand } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { originOf, submitJob } from '../jobs.ts';
import { refusalText } from '../messages.ts';

function optionValue(
  options: APIApplicationCommandInteractionDataOption[] | undefined,
  name: string,
): unknown {
  const opt = options?.find((o) => o.name === name);
  return opt && 'value' in opt ? opt.value : undefined;
}

/** Longest model name the option takes (as a model name in a request). */
const MODEL_NAME_MAX_CHARS = 100;

/**
 * The `/imagine` command as registered where these models are offered: `model` becomes a choice
 * among them (Discord allows 25 choices; beyond that it stays free text, checked on submit).
 */
export function imagineCommandData(models: readonly string[]): SlashCommand['data'] {
  const data = imagineCommand.data;
  if (models.length === 0 || models.length > 25) return data;
  return {
    ...data,
    options: data.options?.map((o) =>
      o.name === 'model' && o.type === ApplicationCommandOptionType.String
        ? { ...o, choices: models.map((m) => ({ name: m, value: m })) }
        : o,
    ),
  } as SlashCommand['data'];
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
        type: ApplicationCommandOptionType.Attachment,
        name: 'image',
        description: 'An image to start from (PNG, JPEG or WebP): the prompt guides a variation',
      },
      {
        type: ApplicationCommandOptionType.String,
        name: 'strength',
        description: 'How far to move from the image (default strong)',
        choices: Object.keys(VARY_STRENGTHS).map((s) => ({ name: s, value: s })),
      },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'count',
        description: `How many images (1-${IMAGE_COUNT_MAX}; default the server's setting)`,
        min_value: 1,
        max_value: IMAGE_COUNT_MAX,
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
      {
        type: ApplicationCommandOptionType.String,
        name: 'model',
        description: "Which model draws it (default the server's)",
        max_length: MODEL_NAME_MAX_CHARS,
      },
    ],
  },

  async execute(ctx) {
    const options = ctx.interaction.data.options;
    const request: Record<string, unknown> = { prompt: optionValue(options, 'prompt') };
    for (const name of ['aspect', 'seed', 'count', 'strength', 'model']) {
      const value = optionValue(options, name);
      if (value !== undefined) request[name] = value;
    }
    try {
      const image = optionValue(options, 'image');
      if (image !== undefined) request.input = inputOf(ctx.interaction, String(image));
      else if (request.strength !== undefined)
        throw new ImagineError('INVALID_PARAMETERS', 'strength goes with an image');
      // Prompt rules are cheap: refuse before deferring, so the refusal stays private.
      parseImagineRequest(request);
    } catch (err) {
      if (err instanceof ImagineError) return tellEphemeral(ctx, refusalText(err));
      throw err;
    }
    // A user who asked for private results gets an ephemeral answer (only they see it). The
    // store is read before the 3-second deadline; when it is away the answer is public.
    const policy = asModeration(ctx.deps.admission);
    const mine = policy
      ? await policy.userDefaults(originOf(ctx.interaction)).catch(() => undefined)
      : undefined;
    const ephemeral = mine?.visibility === 'private';
    await ctx.respond({
      type: InteractionResponseType.DeferredChannelMessageWithSource,
      ...(ephemeral ? { data: { flags: MessageFlags.Ephemeral } } : {}),
    });
    await submitJob(ctx, request, ephemeral ? { ephemeral: true } : {});
  },
};

/** The job input for the attached image (resolved in `data.resolved.attachments`). */
function inputOf(
  interaction: APIChatInputApplicationCommandInteraction,
  attachmentId: string,
): Record<string, unknown> {
  const attachment: APIAttachment | undefined =
    interaction.data.resolved?.attachments?.[attachmentId];
  if (!attachment) throw new ImagineError('INVALID_PARAMETERS', 'the attached image is missing');
  const type = attachment.content_type?.split(';')[0]?.trim();
  if (!type || !(IMAGE_TYPES as readonly string[]).includes(type))
    throw new ImagineError(
      'INVALID_PARAMETERS',
      `attach a PNG, JPEG or WebP image (${attachment.filename} is ${type ?? 'of an unknown type'})`,
    );
  return {
    image: { kind: 'url', url: attachment.url },
    ...(attachment.width && attachment.height
      ? { width: attachment.width, height: attachment.height }
      : {}),
  };
}
