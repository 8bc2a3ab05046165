/**
 * What imagine's Discord messages look like: status lines, the finished image with its embed
 * and buttons, failures with a Retry button, and the ephemeral refusals. The embed's
 * description holds the prompt (escaped reversibly), so a button click reads it back.
 */
import {
  type APIActionRowComponent,
  type APIButtonComponent,
  type APIComponentInMessageActionRow,
  type APIEmbed,
  type APIMessage,
  ButtonStyle,
  ComponentType,
} from 'discord.js';
import type { DeliveredImage, DeliveryEvent } from '../../contracts/delivery.ts';
import { formatDuration } from '../../contracts/duration.ts';
import type { ImagineError } from '../../contracts/errors.ts';
import { JOB_ID_PATTERN } from '../../contracts/job.ts';
import { UPSCALE_MAX_SIDE, upscaleSize } from '../../contracts/limits.ts';
import {
  CUSTOM_ID_MAX,
  encodeCustomId,
  encodeSize,
  type SizeSpec,
  sizeSpecOf,
} from './custom-id.ts';

/**
 * Component names used by imagine's buttons. `vary` is the "Variations" button of messages
 * sent before the creative loop, still answered.
 */
export const BUTTONS = {
  reroll: 'reroll',
  variations: 'vary',
  retry: 'retry',
  upscale: 'up',
  varyImage: 'vy',
  varySubtle: 'vys',
  review: 'review',
  cancel: 'cancel',
} as const;

/** Embed colour (a soft violet). */
const COLOUR = 0x8b5cf6;

const MARKDOWN = /[\\*_~`|>#[\]()<:-]/g;

/** Escape Discord markdown so the prompt shows literally; {@link unescapeMarkdown} reverses it. */
export function escapeMarkdown(text: string): string {
  return text.replace(MARKDOWN, (c) => `\\${c}`);
}

/** Reverse {@link escapeMarkdown}. */
export function unescapeMarkdown(text: string): string {
  return text.replace(/\\([\\*_~`|>#[\]()<:-])/g, '$1');
}

/** The prompt carried by a message imagine sent, or undefined when it has none. */
export function promptOf(message: Pick<APIMessage, 'embeds'> | undefined): string | undefined {
  const description = message?.embeds?.[0]?.description;
  return description ? unescapeMarkdown(description) : undefined;
}

function sizeText(width: number | undefined, height: number | undefined): string | undefined {
  return width && height ? `${width}×${height}` : undefined;
}

/** The embed shown with every state of a job: the prompt, and what is known of it. */
export function jobEmbed(event: DeliveryEvent, imageName?: string): APIEmbed {
  const fields: NonNullable<APIEmbed['fields']> = [];
  if (event.seed !== undefined)
    fields.push({ name: 'Seed', value: String(event.seed), inline: true });
  const size = sizeText(event.width, event.height);
  if (size) fields.push({ name: 'Size', value: size, inline: true });
  if (event.generationMs !== undefined)
    fields.push({
      name: 'Time',
      value: `${(event.generationMs / 1000).toFixed(1)} s`,
      inline: true,
    });
  return {
    description: escapeMarkdown(event.prompt ?? ''),
    color: COLOUR,
    fields,
    ...(imageName ? { image: { url: `attachment://${imageName}` } } : {}),
    ...(event.generator === 'demo'
      ? { footer: { text: 'demo generator: abstract art, not AI' } }
      : {}),
  };
}

function spec(event: DeliveryEvent): SizeSpec | undefined {
  return event.width && event.height ? sizeSpecOf(event.width, event.height) : undefined;
}

function button(label: string, customId: string, emoji?: string): APIButtonComponent {
  return {
    type: ComponentType.Button,
    style: ButtonStyle.Secondary,
    label,
    custom_id: customId,
    ...(emoji ? { emoji: { name: emoji } } : {}),
  };
}

/** A row of components. */
export type Row = APIActionRowComponent<APIComponentInMessageActionRow>;

/** The file name of a job's image: its own seed names it, so a click finds it again. */
export function imageFileName(seed: number, ext: string): string {
  return `imagine-${seed}.${ext}`;
}

/** The size of one image, as buttons carry it. */
const sideText = (image: Pick<DeliveredImage, 'width' | 'height'>) =>
  `${image.width}x${image.height}`;

/** Upscale image `index` (0-based) of the message: `up|index|seed|WxH`. */
export function upscaleId(index: number, image: DeliveredImage): string {
  return encodeCustomId(BUTTONS.upscale, index, image.seed, sideText(image));
}

/** Vary image `index` of the message: `vy|index|seed|WxH|strong`. */
export function varyId(
  index: number,
  image: DeliveredImage,
  strength: 'subtle' | 'strong',
): string {
  return encodeCustomId(BUTTONS.varyImage, index, image.seed, sideText(image), strength);
}

/**
 * The components under a finished job. A grid: U1–U4 and Re-roll, V1–V4 (strong), and a menu
 * to vary one subtly; a single image: Upscale, Vary (Subtle), Vary (Strong), Re-roll; an
 * upscaled image: Vary (Subtle), Vary (Strong) and a further Upscale where the size allows
 * (twice the image within `upscaleMaxSide`, what this deployment's generators upscale to).
 * Each carries the image's index, seed and size; the image itself is the message's attachment.
 */
export function doneButtons(
  event: DeliveryEvent,
  upscaleMaxSide: number = UPSCALE_MAX_SIDE,
): Row[] {
  const images = event.images ?? [];
  const s = spec(event);
  // Re-roll: `reroll|size|count|model` (the model when the job named one). A long model name
  // that would not fit 100 characters leaves no Re-roll: one that dropped it would run another.
  const rerollArgs = [
    s ? encodeSize(s) : '',
    images.length || 1,
    ...(event.model ? [event.model] : []),
  ];
  const reroll =
    [BUTTONS.reroll, ...rerollArgs].join('|').length <= CUSTOM_ID_MAX
      ? button('Re-roll', encodeCustomId(BUTTONS.reroll, ...rerollArgs), '🎲')
      : undefined;
  const rerolls = reroll ? [reroll] : [];
  const [first] = images;
  if (!first) return reroll ? [{ type: ComponentType.ActionRow, components: [reroll] }] : [];
  const canUpscale = (image: DeliveredImage) =>
    upscaleSize(image.width, image.height, upscaleMaxSide) !== undefined;
  if (images.length === 1) {
    const row: APIButtonComponent[] = [];
    if (canUpscale(first))
      row.push(
        button(event.task === 'upscale' ? 'Upscale 2×' : 'Upscale', upscaleId(0, first), '🔍'),
      );
    row.push(button('Vary (Subtle)', varyId(0, first, 'subtle'), '🌱'));
    row.push(button('Vary (Strong)', varyId(0, first, 'strong'), '🌪️'));
    if (event.task !== 'upscale') row.push(...rerolls);
    return [{ type: ComponentType.ActionRow, components: row }];
  }
  const upscales = images.flatMap((image, i) =>
    canUpscale(image) ? [button(`U${i + 1}`, upscaleId(i, image))] : [],
  );
  const top: Row[] =
    upscales.length + rerolls.length > 0
      ? [{ type: ComponentType.ActionRow, components: [...upscales, ...rerolls] }]
      : [];
  return [
    ...top,
    {
      type: ComponentType.ActionRow,
      components: images.map((image, i) => button(`V${i + 1}`, varyId(i, image, 'strong'))),
    },
    {
      type: ComponentType.ActionRow,
      components: [
        {
          type: ComponentType.StringSelect,
          custom_id: encodeCustomId(BUTTONS.varySubtle, sideText(first)),
          placeholder: 'Vary (Subtle)…',
          min_values: 1,
          max_values: 1,
          options: images.map((image, i) => ({
            label: `Vary image ${i + 1} subtly`,
            value: `${i}|${image.seed}`,
          })),
        },
      ],
    },
  ];
}

/**
 * The Retry `custom_id` of a failed or expired job: `retry|size|seed|count|model` (the same
 * prompt, seed, count and model; the count always, since a request naming none gets the
 * server's default). Undefined for a vary or upscale (its source image is on the message whose
 * button started it, so that button is the retry) and when a long model name would not fit.
 */
export function retryCustomId(event: DeliveryEvent): string | undefined {
  if (event.task === 'vary' || event.task === 'upscale') return undefined;
  const s = spec(event);
  const args = [
    s ? encodeSize(s) : '',
    event.seed ?? '',
    event.count ?? 1,
    ...(event.model ? [event.model] : []),
  ];
  // A model name may be up to 100 characters: a Retry that dropped it would run another model.
  if ([BUTTONS.retry, ...args].join('|').length > CUSTOM_ID_MAX) return undefined;
  return encodeCustomId(BUTTONS.retry, ...args);
}

/** Retry under a failed or expired job (see {@link retryCustomId}); none where it has none. */
export function retryButtons(event: DeliveryEvent): APIActionRowComponent<APIButtonComponent>[] {
  const id = retryCustomId(event);
  if (id === undefined) return [];
  return [{ type: ComponentType.ActionRow, components: [button('Retry', id, '🔁')] }];
}

/**
 * The Cancel button on a job's status message: `cancel|<jobId>` (the id is all a click needs, so
 * it works on any relay and after restarts). The relay checks who presses it.
 */
export function cancelButtons(jobId: string): APIActionRowComponent<APIButtonComponent>[] {
  if (!JOB_ID_PATTERN.test(jobId) || jobId.length > 90) return [];
  return [
    {
      type: ComponentType.ActionRow,
      components: [
        {
          type: ComponentType.Button,
          style: ButtonStyle.Danger,
          label: 'Cancel',
          custom_id: encodeCustomId(BUTTONS.cancel, jobId),
        },
      ],
    },
  ];
}

/** The status line of a job that is not finished. */
export function statusLine(event: DeliveryEvent): string {
  if (event.state === 'queued') {
    const ahead = event.position ?? 0;
    return ahead === 0
      ? '⏳ Queued: you are next.'
      : `⏳ Queued: ${ahead} ${ahead === 1 ? 'job' : 'jobs'} ahead of you.`;
  }
  if (event.state === 'generating')
    return event.progress === undefined
      ? '🎨 Generating…'
      : `🎨 Generating… ${Math.floor(Math.min(1, Math.max(0, event.progress)) * 100)}%`;
  return `⏳ ${event.state}`;
}

/** The line shown on a failed, expired or cancelled job, saying what to do. */
export function failureLine(event: DeliveryEvent): string {
  // A vary or upscale is retried from the button on its source image (see retryButtons).
  const again =
    event.task === 'vary' || event.task === 'upscale'
      ? 'Press the button on the image again to retry'
      : retryCustomId(event) === undefined
        ? 'Run /imagine again to try again'
        : 'Press Retry to try again';
  if (event.state === 'cancelled') return '🚫 Cancelled.';
  if (event.state === 'expired')
    return `⌛ This job waited too long in the queue and expired. ${again.replace('try again', 'queue it again')}.`;
  // The push contract allows 2000 + 100 characters of error: keep within Discord's 2000 (with
  // room for the mention a channel post adds).
  const why = event.error
    ? `${clip(event.error.message, WHY_MAX)} (${clip(event.error.code, 100)})`
    : 'unknown error';
  if (event.error?.code === DELIVERY_FAILED)
    return `❌ The image was made but could not be delivered here: ${why}. ${again}.`;
  return `❌ The image could not be made: ${why}. ${again}.`;
}

/** The error code of a job whose image was made but could not be sent to Discord. */
export const DELIVERY_FAILED = 'DELIVERY_FAILED';

const WHY_MAX = 1500;

/** At most `max` UTF-16 units (what Discord's limits are checked against, or stricter). */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, max - 1);
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** Capitalise and end with a full stop. */
function sentence(text: string): string {
  const t = text.trim();
  return `${t.charAt(0).toUpperCase()}${t.slice(1)}${/[.!?]$/.test(t) ? '' : '.'}`;
}

/** A refusal or error, said to the one user (ephemeral), with what to do next. */
export function refusalText(err: ImagineError): string {
  const wait =
    err.retryAfterSeconds !== undefined ? ` in ${formatDuration(err.retryAfterSeconds)}` : ' soon';
  switch (err.code) {
    case 'INVALID_PROMPT':
    case 'INVALID_PARAMETERS':
    case 'BAD_REQUEST':
      return `✋ ${err.message}. Fix that and run /imagine again.`;
    case 'BLOCKED_CONTENT':
      return `🚫 That prompt is not allowed here (${err.message}). Try rephrasing it.`;
    case 'RATE_LIMITED':
      // The policy's message says why, and usually when.
      return /try again/i.test(err.message)
        ? `🐢 ${sentence(err.message)}`
        : `🐢 ${sentence(err.message).replace(/\.$/, '')}. Try again${wait}.`;
    case 'QUEUE_FULL':
      return `🚦 The queue is full right now. Try again${wait}.`;
    case 'CHANNEL_NOT_ALLOWED':
      return `🔒 ${err.message}. Ask a moderator, or try another channel.`;
    case 'QUEUE_UNAVAILABLE':
      return `⚠️ The queue cannot be reached right now. Try again${wait}.`;
    default:
      return `⚠️ Something went wrong (${err.code}). Try again in a moment.`;
  }
}

/** Approve / Reject under an image held for review: `review|approve|<jobId>|<index>`. */
export function reviewButtons(
  jobId: string,
  index: number,
): APIActionRowComponent<APIButtonComponent>[] {
  return [
    {
      type: ComponentType.ActionRow,
      components: [
        {
          type: ComponentType.Button,
          style: ButtonStyle.Success,
          label: 'Approve',
          custom_id: encodeCustomId(BUTTONS.review, 'approve', jobId, index),
        },
        {
          type: ComponentType.Button,
          style: ButtonStyle.Danger,
          label: 'Reject',
          custom_id: encodeCustomId(BUTTONS.review, 'reject', jobId, index),
        },
      ],
    },
  ];
}
