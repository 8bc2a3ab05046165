/**
 * The buttons under imagine's messages. Each click reads the prompt from the message's embed and
 * the rest from its `custom_id`: no server memory, so they work after any restart.
 */
import { type APIMessageComponentInteraction, InteractionResponseType } from 'discord.js';
import { decodeSize } from '../custom-id.ts';
import type { ComponentHandler, InteractionContext } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { submitJob } from '../jobs.ts';
import { BUTTONS, escapeMarkdown, promptOf, statusLine } from '../messages.ts';

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
  // A deferred reply to a button click is a new message: the original image stays as it is.
  await ctx.respond({ type: InteractionResponseType.DeferredChannelMessageWithSource });
  await submitJob(ctx, request);
}

/** Re-roll: same prompt and size, a new seed. */
export const rerollButton: ComponentHandler = {
  name: BUTTONS.reroll,
  execute: (ctx, args) => rerun(ctx, args, false),
};

/** Retry a failed or expired job: same prompt, size and seed. */
export const retryButton: ComponentHandler = {
  name: BUTTONS.retry,
  execute: (ctx, args) => rerun(ctx, args, true),
};

/** Variations: same prompt and size, four new seeds, each answered in its own follow-up. */
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
        { prompt, ...decodeSize(args[0]) },
        { messageId: message.id, followUp: true },
      );
      if (!submitted) {
        await deps.api.deleteMessage(appId, interaction.token, message.id).catch(() => {});
        return;
      }
    }
  },
};
