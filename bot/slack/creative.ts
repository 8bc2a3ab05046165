/**
 * The creative loop's buttons on a Slack result card: U1–U4 (upscale image i), V1–V4 (vary
 * image i, strong), and on a single image Vary (Subtle), Vary (Strong) and Upscale 2× while the
 * size allows, plus Re-roll (the same job, new seeds). As Midjourney has them: a grid's V
 * buttons vary strongly; the subtle vary is offered on one image.
 *
 * Each button's value carries everything its job needs — `v2|{meta}|prompt`, the meta a small
 * JSON object (task, image index and seed, sizes, the Slack file id of the source image) and
 * the prompt last and unescaped — so a click works on any relay, after any restart. The source
 * image is never in the value: it is the file in the thread, which the worker fetches at job
 * time (`files.info` → `url_private` with the bot token) from the job's `slack-file` reference.
 */
import type { types } from '@slack/bolt';
import { z } from 'zod';
import {
  ASPECT_SIZES,
  type AspectRatio,
  IMAGE_COUNT_MAX,
  JOB_ID_PATTERN,
  ModelNameSchema,
  UPSCALE_MAX_SIDE,
  upscaleSize,
} from '../../contracts/job.ts';
import { truncate, versionedBlockId, withPrompt } from './blocks.ts';

/** Action ids of the creative-loop buttons (the index, where there is one, is the suffix). */
export const CREATIVE_ACTIONS = {
  upscale: 'imagine_upscale',
  varyStrong: 'imagine_vary_strong',
  varySubtle: 'imagine_vary_subtle',
  reroll: 'imagine_reroll_job',
} as const;

/** Matches every creative-loop action id: `imagine_upscale_2`, `imagine_reroll_job`, … */
export const CREATIVE_ACTION_PATTERN =
  /^imagine_(upscale|vary_strong|vary_subtle)(_[1-4])?$|^imagine_reroll_job$/;

const FileId = z.string().regex(/^F[A-Z0-9]{2,40}$/);
const Side = z.number().int().min(1).max(8192);

/** What a button's value says about the job it was under and the image it stands for. */
const ButtonMetaSchema = z
  .object({
    /** The task of the job the card shows. */
    t: z.enum(['generate', 'vary', 'upscale']),
    /** That job's image count, base seed, size, steps and strength (Re-roll repeats them). */
    n: z.number().int().min(1).max(IMAGE_COUNT_MAX),
    s: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1),
    w: Side,
    h: Side,
    st: z.number().int().min(1).max(50).optional(),
    k: z.number().gt(0).max(1).optional(),
    /** The job id (a source reference for U/V). */
    j: z.string().regex(JOB_ID_PATTERN).optional(),
    /** U/V: which image (0-based), its own seed and its Slack file. */
    i: z
      .number()
      .int()
      .min(0)
      .max(IMAGE_COUNT_MAX - 1)
      .optional(),
    is: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1)
      .optional(),
    f: FileId.optional(),
    /** Re-roll of a vary or upscale: the job's own input (file, size). */
    in: z.object({ f: FileId, w: Side.optional(), h: Side.optional() }).strict().optional(),
    /** Re-roll: the model the job named (the submit path checks it is still offered). */
    m: ModelNameSchema.optional(),
  })
  .strict();
/** The meta a creative-loop button carries. */
export type ButtonMeta = z.infer<typeof ButtonMetaSchema>;

/** Slack caps a button value at 2000 characters. */
const VALUE_MAX = 2000;

/** `v2|{meta}|prompt`. */
export function encodeButton(meta: ButtonMeta, prompt: string): string {
  return `v2|${JSON.stringify(meta)}|${prompt}`;
}

/** Decode a button value; undefined when it is not a v2 value of ours. */
export function decodeButton(
  value: string | undefined,
): { meta: ButtonMeta; prompt: string } | undefined {
  if (!value?.startsWith('v2|')) return undefined;
  const end = value.indexOf('}|', 3);
  if (end < 0) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(value.slice(3, end + 1));
  } catch {
    return undefined;
  }
  const meta = ButtonMetaSchema.safeParse(raw);
  const prompt = value.slice(end + 2);
  if (!meta.success || !prompt) return undefined;
  return { meta: meta.data, prompt };
}

/** One finished image on a card. */
export interface CardImage {
  seed: number;
  width: number;
  height: number;
  /** The uploaded file in the thread. */
  fileId: string | undefined;
  /** Output safety blurred it: the card offers "Show image" (the original, to the clicker only). */
  spoiler?: boolean | undefined;
}

/** Action ids of the "Show image" buttons under blurred images (`imagine_reveal_2`). */
export const REVEAL_ACTION_PATTERN = /^imagine_reveal_[1-4]$/;

/**
 * "Show image" under each blurred image of a card: its value is `<jobId>|<index>`, the original
 * is fetched from the relay's memory at click time and sent to the clicker alone.
 */
export function revealButtons(jobId: string, images: readonly CardImage[]): types.KnownBlock[] {
  const elements = images.flatMap((image, i) =>
    image.spoiler
      ? [
          button(
            images.length > 1 ? `👁 Show image ${i + 1}` : '👁 Show image',
            `imagine_reveal_${i + 1}`,
            `${jobId}|${i}`,
          ),
        ]
      : [],
  );
  return elements.length === 0 || !JOB_ID_PATTERN.test(jobId)
    ? []
    : [{ type: 'actions', block_id: versionedBlockId('imagine_reveal'), elements }];
}

/** The job a card shows, as a button needs it. */
export interface CardJob {
  jobId: string;
  task: 'generate' | 'vary' | 'upscale';
  prompt: string;
  seed: number;
  width: number;
  height: number;
  count: number;
  steps?: number | undefined;
  strength?: number | undefined;
  /** The job's own input (vary/upscale): its Slack file, when it was one. */
  inputFileId?: string | undefined;
  inputWidth?: number | undefined;
  inputHeight?: number | undefined;
  /** The model the job named, if it named one (Re-roll repeats it). */
  model?: string | undefined;
}

function button(text: string, actionId: string, value: string): types.Button {
  return { type: 'button', text: { type: 'plain_text', text }, action_id: actionId, value };
}

/**
 * The actions blocks of a result card, or none when a value would not fit Slack's limit (a
 * prompt of 1000 emoji). Grid: U1–U4 / V1–V4 / Re-roll. One image: Vary (Subtle), Vary
 * (Strong), Upscale 2× (while twice the size stays within `upscaleMaxSide`, what this
 * deployment's generators upscale to), Re-roll (not for an
 * upscale: it has no seeds of its own to draw again). An image output safety blurred gets no U
 * or V (its file in the thread is the blurred copy).
 */
export function creativeButtons(
  job: CardJob,
  images: readonly CardImage[],
  upscaleMaxSide: number = UPSCALE_MAX_SIDE,
): types.KnownBlock[] {
  const base: ButtonMeta = {
    t: job.task,
    n: job.count,
    s: job.seed,
    w: job.width,
    h: job.height,
    ...(job.steps !== undefined ? { st: job.steps } : {}),
    ...(job.strength !== undefined ? { k: job.strength } : {}),
    ...(JOB_ID_PATTERN.test(job.jobId) ? { j: job.jobId } : {}),
  };
  const forImage = (i: number): ButtonMeta | undefined => {
    const image = images[i];
    // A blurred image's file is the blurred copy: a U or V from it would start from the blur.
    // "Show image" reveals the original; U/V stay for the images shown as made.
    if (!image?.fileId || image.spoiler) return undefined;
    return { ...base, i, is: image.seed, w: image.width, h: image.height, f: image.fileId };
  };
  const rerollMeta: ButtonMeta = {
    ...base,
    ...(job.model ? { m: job.model } : {}),
    ...(job.inputFileId
      ? {
          in: {
            f: job.inputFileId,
            ...(job.inputWidth ? { w: job.inputWidth } : {}),
            ...(job.inputHeight ? { h: job.inputHeight } : {}),
          },
        }
      : {}),
  };
  const rows: types.Button[][] = [];
  if (images.length > 1) {
    const u: types.Button[] = [];
    const v: types.Button[] = [];
    images.forEach((_, i) => {
      const meta = forImage(i);
      if (!meta) return;
      const canUpscale = upscaleSize(meta.w, meta.h, upscaleMaxSide) !== undefined;
      if (canUpscale)
        u.push(
          button(
            `U${i + 1}`,
            `${CREATIVE_ACTIONS.upscale}_${i + 1}`,
            encodeButton(meta, job.prompt),
          ),
        );
      v.push(
        button(
          `V${i + 1}`,
          `${CREATIVE_ACTIONS.varyStrong}_${i + 1}`,
          encodeButton(meta, job.prompt),
        ),
      );
    });
    if (u.length) rows.push(u);
    if (v.length) rows.push(v);
  } else {
    const meta = forImage(0);
    if (meta) {
      const row = [
        button('Vary (Subtle)', CREATIVE_ACTIONS.varySubtle, encodeButton(meta, job.prompt)),
        button('Vary (Strong)', CREATIVE_ACTIONS.varyStrong, encodeButton(meta, job.prompt)),
      ];
      if (upscaleSize(meta.w, meta.h, upscaleMaxSide))
        row.push(button('Upscale 2×', CREATIVE_ACTIONS.upscale, encodeButton(meta, job.prompt)));
      rows.push(row);
    }
  }
  if (job.task !== 'upscale')
    rows.push([
      button('🎲 Re-roll', CREATIVE_ACTIONS.reroll, encodeButton(rerollMeta, job.prompt)),
    ]);
  if (rows.some((row) => row.some((b) => (b.value ?? '').length > VALUE_MAX))) return [];
  return rows.map((elements) => ({
    type: 'actions',
    block_id: versionedBlockId('imagine_loop'),
    elements,
  }));
}

function sizeRequest(width: number, height: number): Record<string, unknown> {
  const aspect = (Object.keys(ASPECT_SIZES) as AspectRatio[]).find(
    (a) => ASPECT_SIZES[a].width === width && ASPECT_SIZES[a].height === height,
  );
  return aspect ? { aspect } : { width, height };
}

/**
 * The request a click asks for, unvalidated (the submit path checks it, and every limit and
 * moderation rule applies as to `/imagine`). `undefined` when the button cannot make one.
 */
export function requestForClick(
  actionId: string,
  decoded: { meta: ButtonMeta; prompt: string },
): Record<string, unknown> | undefined {
  const { meta, prompt } = decoded;
  const source = () =>
    meta.f
      ? {
          image: { kind: 'slack-file', fileId: meta.f },
          ...(meta.j ? { jobId: meta.j } : {}),
          ...(meta.i !== undefined ? { index: meta.i } : {}),
          ...(meta.is !== undefined ? { seed: meta.is } : {}),
          width: meta.w,
          height: meta.h,
        }
      : undefined;
  if (actionId.startsWith(CREATIVE_ACTIONS.upscale)) {
    const input = source();
    return input ? { prompt, task: 'upscale', input } : undefined;
  }
  if (
    actionId.startsWith(CREATIVE_ACTIONS.varyStrong) ||
    actionId.startsWith(CREATIVE_ACTIONS.varySubtle)
  ) {
    const input = source();
    if (!input) return undefined;
    const strength = actionId.startsWith(CREATIVE_ACTIONS.varySubtle) ? 'subtle' : 'strong';
    // A vary of a grid's image makes a grid as big; of a single image, the server's default.
    return { prompt, task: 'vary', strength, input, ...(meta.n > 1 ? { count: meta.n } : {}) };
  }
  if (actionId === CREATIVE_ACTIONS.reroll) {
    if (meta.t === 'upscale') return undefined;
    const request: Record<string, unknown> = {
      prompt,
      count: meta.n,
      ...(meta.st !== undefined ? { steps: meta.st } : {}),
      ...(meta.m !== undefined ? { model: meta.m } : {}),
    };
    if (meta.t === 'vary') {
      if (!meta.in) return undefined;
      return {
        ...request,
        task: 'vary',
        ...(meta.k !== undefined ? { strength: meta.k } : {}),
        input: {
          image: { kind: 'slack-file', fileId: meta.in.f },
          ...(meta.in.w && meta.in.h ? { width: meta.in.w, height: meta.in.h } : {}),
        },
        ...sizeRequest(meta.w, meta.h),
      };
    }
    return { ...request, ...sizeRequest(meta.w, meta.h) };
  }
  return undefined;
}

/** What a result card says besides the buttons. */
export interface CardFacts {
  userId: string;
  seconds?: number | undefined;
  demo: boolean;
  /** Largest upscale this deployment's generators make (default UPSCALE_MAX_SIDE). */
  upscaleMaxSide?: number | undefined;
}

/** "seeds 10–13 · 1024×1024 · 2.1 s · demo generator" */
export function cardFactsLine(job: CardJob, images: readonly CardImage[], f: CardFacts): string {
  const parts: string[] = [];
  const seeds = images.map((i) => i.seed);
  if (seeds.length === 1) parts.push(`seed ${seeds[0]}`);
  else if (seeds.length > 1) parts.push(`seeds ${seeds[0]}–${seeds.at(-1)}`);
  if (job.width && job.height) parts.push(`${job.width}×${job.height}`);
  if (f.seconds !== undefined) parts.push(`${f.seconds.toFixed(1)} s`);
  if (f.demo) parts.push('demo generator');
  return parts.join(' · ');
}

const VERB = { generate: 'imagined', vary: 'varied', upscale: 'upscaled' } as const;

/**
 * The status message once a job's images are in the thread: the prompt, a preview of each
 * image (numbered, so U2 / V3 are easy to match), the facts and the buttons.
 */
export function loopResultMessage(
  job: CardJob,
  images: readonly (CardImage & { preview: boolean })[],
  f: CardFacts,
): { text: string; blocks: types.KnownBlock[] } {
  const head = withPrompt(`<@${f.userId}> ${VERB[job.task]}: *`, job.prompt, '*');
  const blocks: types.KnownBlock[] = [{ type: 'section', text: { type: 'mrkdwn', text: head } }];
  images.forEach((image, i) => {
    if (!image.fileId || !image.preview) return;
    blocks.push({
      type: 'image',
      slack_file: { id: image.fileId },
      alt_text: truncate(
        `${job.prompt}${images.length > 1 ? ` (${i + 1} of ${images.length})` : ''}`,
        1900,
      ),
      ...(images.length > 1 ? { title: { type: 'plain_text', text: String(i + 1) } } : {}),
    });
  });
  const facts = cardFactsLine(job, images, f);
  const shown = images.every((i) => i.fileId && i.preview);
  blocks.push({
    type: 'context',
    elements: [
      { type: 'mrkdwn', text: truncate(`${facts}${shown ? '' : ' · images in the thread'}`, 2900) },
    ],
  });
  blocks.push(...revealButtons(job.jobId, images));
  blocks.push(...creativeButtons(job, images, f.upscaleMaxSide));
  return { text: `${head} — ${facts}`, blocks };
}
