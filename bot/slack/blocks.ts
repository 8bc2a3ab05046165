/**
 * Block Kit for the status message a job lives in: queued → generating → result (Re-roll,
 * Variations) or failure (Retry). Every button carries the whole job spec in its value, so a
 * click works on any relay instance, however long after and however many restarts since.
 */
import { randomBytes } from 'node:crypto';
import type { types } from '@slack/bolt';
import { ASPECT_SIZES, type AspectRatio, JOB_ID_PATTERN } from '../../contracts/job.ts';

type Block = types.KnownBlock;

/** Action ids of the buttons (the action registry dispatches on these). */
export const ACTION_IDS = {
  reroll: 'imagine_reroll',
  variations: 'imagine_variations',
  retry: 'imagine_retry',
} as const;

/** What a button needs to submit a job again. */
export interface JobSpec {
  prompt: string;
  seed?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  /** Images the job made (1 for a `v1` value: those come from before the grid). */
  count?: number | undefined;
  /** The model the job asked for, when it named one. */
  model?: string | undefined;
}

/**
 * `v3|seed|width|height|count|model|prompt` (`v1|seed|width|height|prompt` from before the
 * grid is still read): the prompt goes last and unescaped, so a 1000-character prompt (the
 * limit) fits Slack's 2000-character button value. Model names hold no `|`.
 */
export function encodeJobSpec(spec: JobSpec): string {
  const n = (v: number | undefined) => (v === undefined ? '' : String(v));
  return `v3|${n(spec.seed)}|${n(spec.width)}|${n(spec.height)}|${n(spec.count)}|${spec.model ?? ''}|${spec.prompt}`;
}

/** Slack caps a button value at 2000 characters; a spec that does not fit gets no buttons. */
export function fitsButton(value: string): boolean {
  return value.length <= 2000;
}

/** Decode a button value; `undefined` when it is not one of ours. */
export function decodeJobSpec(value: string | undefined): JobSpec | undefined {
  const v3 = value?.startsWith('v3|') === true;
  if (!value || (!v3 && !value.startsWith('v1|'))) return undefined;
  const parts = value.split('|');
  const head = v3 ? 6 : 4;
  if (parts.length < head + 1) return undefined;
  const num = (s: string | undefined) => (s ? Number(s) : undefined);
  const [, seed, width, height, count, model] = parts;
  const prompt = parts.slice(head).join('|');
  if (!prompt) return undefined;
  return {
    prompt,
    seed: num(seed),
    width: num(width),
    height: num(height),
    // A v1 value is from before the grid: its job made one image.
    count: v3 ? num(count) : 1,
    ...(v3 && model ? { model } : {}),
  };
}

/**
 * The request a spec stands for; `newSeed` drops the seed so a fresh one is drawn. The count
 * and model are the job's (the submit path checks both against where the click is made).
 */
export function requestFromSpec(spec: JobSpec, newSeed: boolean): Record<string, unknown> {
  const request: Record<string, unknown> = { prompt: spec.prompt };
  if (!newSeed && spec.seed !== undefined) request.seed = spec.seed;
  if (spec.count !== undefined) request.count = spec.count;
  if (spec.model !== undefined) request.model = spec.model;
  if (spec.width !== undefined && spec.height !== undefined) {
    const aspect = (Object.keys(ASPECT_SIZES) as AspectRatio[]).find(
      (a) => ASPECT_SIZES[a].width === spec.width && ASPECT_SIZES[a].height === spec.height,
    );
    if (aspect) request.aspect = aspect;
    else Object.assign(request, { width: spec.width, height: spec.height });
  }
  return request;
}

/** Escape user text for mrkdwn (Slack's three control characters). */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Shorten to at most `max` UTF-16 units (`.length`, the strictest way a limit can be counted)
 * with an ellipsis, never splitting an emoji's surrogate pair. Counting code points let an
 * escaped prompt of emoji and `&` pass as 2900 "characters" but weigh 3300.
 */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let out = '';
  for (const char of text) {
    if (out.length + char.length > max - 1) break;
    out += char;
  }
  return `${out}…`;
}

/**
 * Escape user text for mrkdwn and fit it in `max` UTF-16 units of *escaped* text: the cut is
 * made in the raw text, so it never falls inside an entity (`&amp;`) or a surrogate pair, and
 * an escaped prompt of `&`s cannot grow past the limit it was measured against.
 */
export function escapeTruncated(text: string, max: number): string {
  const escaped = escapeMrkdwn(text);
  if (escaped.length <= max) return escaped;
  let out = '';
  for (const char of text) {
    const piece = escapeMrkdwn(char);
    if (out.length + piece.length > max - 1) break;
    out += piece;
  }
  return `${out}…`;
}

/** The most a section or context text may hold (Slack: 3000; kept under it). */
const TEXT_MAX = 2900;

/**
 * `prefix + prompt + suffix` within `max`, the prompt escaped and shortened: the prefix and
 * suffix (mentions, markup) are never cut.
 */
export function withPrompt(prefix: string, prompt: string, suffix = '', max = TEXT_MAX): string {
  return `${prefix}${escapeTruncated(prompt, Math.max(1, max - prefix.length - suffix.length))}${suffix}`;
}

/**
 * A block id for one version of a message: Slack asks for a new block_id each time a message
 * is updated (a reused one can keep a client showing the old block).
 */
export function versionedBlockId(name: string): string {
  return `${name}.${randomBytes(6).toString('base64url')}`;
}

/** Image types Slack renders in an `image` block's `slack_file` preview. */
export const PREVIEW_FILETYPES = new Set(['png', 'jpg', 'jpeg', 'gif']);

/** A finished job's facts, for the result card and the file comment. */
export interface ResultFacts {
  userId: string;
  prompt: string;
  seed?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  seconds?: number | undefined;
  demo: boolean;
}

/** "seed 42 · 1344×768 · 2.1 s · demo generator" */
export function factsLine(f: Omit<ResultFacts, 'userId' | 'prompt'>): string {
  const parts: string[] = [];
  if (f.seed !== undefined) parts.push(`seed ${f.seed}`);
  if (f.width && f.height) parts.push(`${f.width}×${f.height}`);
  if (f.seconds !== undefined) parts.push(`${f.seconds.toFixed(1)} s`);
  if (f.demo) parts.push('demo generator');
  return parts.join(' · ');
}

/** A section of text already escaped and within {@link TEXT_MAX}. */
function promptSection(text: string): Block {
  return { type: 'section', text: { type: 'mrkdwn', text } };
}

/** A context line of our own text (no user text in it, so it is safe to shorten). */
function context(text: string): Block {
  return { type: 'context', elements: [{ type: 'mrkdwn', text: truncate(text, TEXT_MAX) }] };
}

/** The Cancel button's action id (its value is the job id). */
export const CANCEL_ACTION_ID = 'imagine_cancel';

/**
 * The status message while a job waits or runs; with `cancelJobId`, a Cancel button (for the
 * person who asked and moderators, checked on the relay) whose value is the job id.
 */
export function statusMessage(
  userId: string,
  prompt: string,
  line: string,
  cancelJobId?: string,
): { text: string; blocks: Block[] } {
  const head = withPrompt(`<@${userId}> is imagining: *`, prompt, '*');
  const blocks = [promptSection(head), context(line)];
  if (cancelJobId && JOB_ID_PATTERN.test(cancelJobId))
    blocks.push({
      type: 'actions',
      block_id: versionedBlockId('imagine_status'),
      elements: [
        {
          type: 'button',
          action_id: CANCEL_ACTION_ID,
          text: { type: 'plain_text', text: 'Cancel' },
          style: 'danger',
          value: cancelJobId,
        },
      ],
    });
  return { text: `${head} — ${line}`, blocks };
}

/** The status message of a cancelled job: it says so, with Retry when the job can be re-run. */
export function cancelledMessage(
  userId: string,
  spec: JobSpec,
  opts: { retry?: boolean } = {},
): { text: string; blocks: Block[] } {
  const head = withPrompt(`<@${userId}>'s image was cancelled: *`, spec.prompt, '*');
  const line = ':no_entry_sign: Cancelled.';
  const value = encodeJobSpec(spec);
  const blocks: Block[] = [promptSection(head), context(line)];
  if (opts.retry !== false && fitsButton(value))
    blocks.push({
      type: 'actions',
      block_id: versionedBlockId('imagine_cancelled'),
      elements: [
        {
          type: 'button',
          action_id: ACTION_IDS.retry,
          text: { type: 'plain_text', text: '🔁 Retry' },
          value,
        },
      ],
    });
  return { text: `${head} — Cancelled.`, blocks };
}

/** The context line of a queued job. */
export function queuedLine(position: number | undefined): string {
  if (!position) return ':hourglass_flowing_sand: Queued · next up';
  return `:hourglass_flowing_sand: Queued · ${position} ahead`;
}

/** The context line of a running job. */
export const GENERATING_LINE = ':art: Generating…';

/** The context line of a running job, with its percentage once the generator reports one. */
export function generatingLine(progress: number | undefined): string {
  if (progress === undefined) return GENERATING_LINE;
  return `${GENERATING_LINE} ${Math.floor(Math.min(1, Math.max(0, progress)) * 100)}%`;
}

/** The status message once the image is in: facts, preview and Re-roll / Variations. */
export function resultMessage(
  f: ResultFacts,
  spec: JobSpec,
  fileId: string | undefined,
): { text: string; blocks: Block[] } {
  const head = withPrompt(`<@${f.userId}> imagined: *`, f.prompt, '*');
  const value = encodeJobSpec(spec);
  const blocks: Block[] = [promptSection(head)];
  if (fileId)
    blocks.push({
      type: 'image',
      slack_file: { id: fileId },
      alt_text: truncate(f.prompt, 1900),
    });
  blocks.push(context(`${factsLine(f)}${fileId ? '' : ' · image in the thread'}`));
  if (!fitsButton(value)) return { text: `${head} — ${factsLine(f)}`, blocks };
  blocks.push({
    type: 'actions',
    block_id: versionedBlockId('imagine_result'),
    elements: [
      {
        type: 'button',
        action_id: ACTION_IDS.reroll,
        text: { type: 'plain_text', text: '🎲 Re-roll' },
        value,
      },
      {
        type: 'button',
        action_id: ACTION_IDS.variations,
        text: { type: 'plain_text', text: '🔀 Variations' },
        value,
      },
    ],
  });
  return { text: `${head} — ${factsLine(f)}`, blocks };
}

/** The status message of a failed or expired job: what happened, what to do, Retry (unless `retry: false`). */
export function failedMessage(
  userId: string,
  spec: JobSpec,
  advice: string,
  opts: { retry?: boolean } = {},
): { text: string; blocks: Block[] } {
  const head = withPrompt(`<@${userId}>'s image failed: *`, spec.prompt, '*');
  const value = encodeJobSpec(spec);
  if (opts.retry === false || !fitsButton(value))
    return {
      text: `${head} — ${advice}`,
      blocks: [promptSection(head), context(`:warning: ${advice}`)],
    };
  return {
    text: `${head} — ${advice}`,
    blocks: [
      promptSection(head),
      context(`:warning: ${advice}`),
      {
        type: 'actions',
        block_id: versionedBlockId('imagine_failed'),
        elements: [
          {
            type: 'button',
            action_id: ACTION_IDS.retry,
            text: { type: 'plain_text', text: '🔁 Retry' },
            style: 'primary',
            value,
          },
        ],
      },
    ],
  };
}
