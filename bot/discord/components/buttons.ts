/**
 * The buttons under imagine's messages. Each click reads the prompt from the message's embed,
 * the source image of an upscale or vary from the message's attachments (the interaction
 * carries the message, with fresh attachment URLs) and the rest from its `custom_id`: no server
 * memory, so they work after any restart. The job references the image; the worker fetches it.
 */
import {
  type APIAttachment,
  type APIMessageComponentInteraction,
  ComponentType,
  InteractionResponseType,
} from 'discord.js';
import { ImagineError } from '../../../contracts/errors.ts';
import { parseImagineRequest } from '../../../submit/submit.ts';
import { decodeSize } from '../custom-id.ts';
import type { ComponentHandler, InteractionContext } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { submitJob } from '../jobs.ts';
import { BUTTONS, escapeMarkdown, promptOf, refusalText, statusLine } from '../messages.ts';

/** How many images Variations makes. */
export const VARIATION_COUNT = 4;

function promptOrTell(ctx: InteractionContext<APIMessageComponentInteraction>): string | undefined {
  return promptOf(ctx.interaction.message);
}

const NO_PROMPT = 'This message no longer carries its prompt. Run /imagine again.';

async function rerun(
  ctx: InteractionContext<APIMessageComponentInteraction>,
  args: string[],
  withSeed: boolean,
): Promise<void> {
  const prompt = promptOrTell(ctx);
  if (!prompt) return tellEphemeral(ctx, NO_PROMPT);
  const request: Record<string, unknown> = { prompt, ...decodeSize(args[0]) };
  const seed = Number(args[1]);
  if (withSeed && args[1] && Number.isInteger(seed)) request.seed = seed;
  // Re-roll carries its count second, Retry third. Buttons from before the grid carry none
  // (and Retry carried none for one image): theirs made 1, not today's default of 4.
  const count = Number(withSeed ? args[2] : args[1]);
  request.count = Number.isInteger(count) && count >= 1 ? count : 1;
  // Retry carries the job's model fourth when it named one, Re-roll third (the submit path
  // checks it is still offered).
  const model = withSeed ? args[3] : args[2];
  if (model) request.model = model;
  // A deferred reply to a button click is a new message: the original image stays as it is.
  await ctx.respond({ type: InteractionResponseType.DeferredChannelMessageWithSource });
  await submitJob(ctx, request);
}

/** Re-roll: same prompt, size, count and model, new seeds (`reroll|WxH|n|model`). */
export const rerollButton: ComponentHandler = {
  name: BUTTONS.reroll,
  execute: (ctx, args) => rerun(ctx, args, false),
};

/** Retry a failed or expired job: same prompt, size, seed, count and model (`retry|WxH|seed|n|model`). */
export const retryButton: ComponentHandler = {
  name: BUTTONS.retry,
  execute: (ctx, args) => rerun(ctx, args, true),
};

/**
 * Variations, on messages from before the grid: same prompt and size, four new seeds, each
 * answered in its own follow-up with one image.
 */
export const variationsButton: ComponentHandler = {
  name: BUTTONS.variations,
  async execute(ctx, args) {
    const prompt = promptOrTell(ctx);
    if (!prompt) return tellEphemeral(ctx, NO_PROMPT);
    const { interaction, deps } = ctx;
    const appId = interaction.application_id;
    await ctx.respond({ type: InteractionResponseType.DeferredChannelMessageWithSource });
    // Resolve the deferred message first: otherwise the first follow-up would replace it.
    await deps.api.editMessage(appId, interaction.token, '@original', {
      content: `🔀 ${VARIATION_COUNT} variations on the way.`,
      embeds: [{ description: escapeMarkdown(prompt) }],
    });
    for (let i = 0; i < VARIATION_COUNT; i++) {
      const message = await deps.api.followUp(appId, interaction.token, {
        content: statusLine({ jobId: '', state: 'queued', createdAt: deps.now(), position: 0 }),
        embeds: [{ description: escapeMarkdown(prompt) }],
      });
      const submitted = await submitJob(
        ctx,
        { prompt, count: 1, ...decodeSize(args[0]) },
        { messageId: message.id, followUp: true },
      );
      if (!submitted) {
        await deps.api.deleteMessage(appId, interaction.token, message.id).catch(() => {});
        return;
      }
    }
  },
};

/** The message's attachment for image `index` of seed `seed` (its file is named by its seed). */
function sourceImage(
  ctx: InteractionContext<APIMessageComponentInteraction>,
  index: number,
  seed: number,
): APIAttachment | undefined {
  const attachments = ctx.interaction.message.attachments ?? [];
  return attachments.find((a) => a.filename.startsWith(`imagine-${seed}.`)) ?? attachments[index];
}

const NO_IMAGE = 'This message no longer carries that image. Run /imagine again.';

/** Upscale or vary image `index` (seed, size) of the clicked message. */
async function fromImage(
  ctx: InteractionContext<APIMessageComponentInteraction>,
  task: 'upscale' | 'vary',
  args: { index: string | undefined; seed: string | undefined; size: string | undefined },
  strength?: 'subtle' | 'strong',
): Promise<void> {
  const prompt = promptOrTell(ctx);
  if (!prompt) return tellEphemeral(ctx, NO_PROMPT);
  const index = Number(args.index);
  const seed = Number(args.seed);
  const size = decodeSize(args.size);
  if (!Number.isInteger(index) || !Number.isInteger(seed) || !('width' in size))
    return tellEphemeral(ctx, 'This button is no longer supported. Run /imagine again.');
  const attachment = sourceImage(ctx, index, seed);
  if (!attachment) return tellEphemeral(ctx, NO_IMAGE);
  const request: Record<string, unknown> = {
    prompt,
    task,
    input: {
      image: { kind: 'url', url: attachment.url },
      index,
      seed,
      width: size.width,
      height: size.height,
    },
    ...(strength ? { strength } : {}),
  };
  try {
    // Cheap checks first (an upscale past the size limit, a bad prompt): refuse privately.
    parseImagineRequest(request);
  } catch (err) {
    if (err instanceof ImagineError) return tellEphemeral(ctx, refusalText(err));
    throw err;
  }
  // A new message under the clicked one; the grid stays as it is, its buttons live.
  await ctx.respond({ type: InteractionResponseType.DeferredChannelMessageWithSource });
  await submitJob(ctx, request);
}

/** U1–U4: upscale one image of the message (`up|index|seed|WxH`). */
export const upscaleButton: ComponentHandler = {
  name: BUTTONS.upscale,
  execute: (ctx, [index, seed, size]) => fromImage(ctx, 'upscale', { index, seed, size }),
};

/** V1–V4, Vary (Subtle/Strong): vary one image of the message (`vy|index|seed|WxH|strength`). */
export const varyImageButton: ComponentHandler = {
  name: BUTTONS.varyImage,
  execute: (ctx, [index, seed, size, strength]) =>
    fromImage(ctx, 'vary', { index, seed, size }, strength === 'subtle' ? 'subtle' : 'strong'),
};

/** The "Vary (Subtle)…" menu of a grid (`vys|WxH`, the chosen value `index|seed`). */
export const varySubtleMenu: ComponentHandler = {
  name: BUTTONS.varySubtle,
  execute(ctx, [size]) {
    const data = ctx.interaction.data;
    const choice = data.component_type === ComponentType.StringSelect ? data.values[0] : undefined;
    const [index, seed] = (choice ?? '').split('|');
    return fromImage(ctx, 'vary', { index, seed, size }, 'subtle');
  },
};
