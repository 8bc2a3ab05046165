/**
 * Slack delivery: keeps the job's status message current (queued · N ahead → generating),
 * then uploads the image from memory into the status message's thread (beside it in DMs) and
 * turns the status message into the result card: preview, facts, Re-roll and Variations. A
 * failure turns it into the error with Retry and tells the user.
 *
 * Rate tiers: status edits are droppable. They go through a client that does not wait out a
 * 429 (so the shared client's queue is never paused for one) and only while the method's
 * budget has room; an edit that would show the same line again is skipped. Results and
 * failures use the shared client and wait only for their own method's room.
 *
 * Why the thread: in a busy channel each job stays one message (the card, with an inline
 * preview), and re-rolls and variations gather under it instead of flooding the channel.
 */
import type { types } from '@slack/bolt';
import type { WebClient } from '@slack/web-api';
import type { Logger } from 'pino';
import {
  ALT_TEXT_MAX,
  type ChatDeliverer,
  type DeliveryEvent,
  type HeldImage,
  imageAltText,
} from '../../contracts/delivery.ts';
import { withheldLine } from '../../contracts/safety.ts';
import type { ReplyTarget, SlackTarget } from '../../contracts/seal.ts';
import {
  cancelledMessage,
  escapeTruncated,
  failedMessage,
  generatingLine,
  type JobSpec,
  queuedLine,
  statusMessage,
  truncate,
  withPrompt,
} from './blocks.ts';
import { cardFactsLine, loopResultMessage } from './creative.ts';
import { type SlackCallPriority, SlackRateBudget } from './rate-budget.ts';
import { adviceFor, ResponseUrlTracker, tellUser } from './replies.ts';
import { blurredCopy, postSlackReview } from './review.ts';
import { previewable, uploadFiles } from './upload.ts';

/** Options of {@link SlackDeliverer}. */
export interface SlackDelivererOptions {
  /** The shared client: waits out 429s (results and failures go through it). */
  client: WebClient;
  /** A client that rejects a 429 at once instead of pausing (droppable status edits). */
  droppableClient?: WebClient;
  logger: Logger;
  /** Whether the generator is the demo one (labelled as such). */
  isDemo(generator: string | undefined): boolean;
  now?: () => number;
  budget?: SlackRateBudget;
  responseUrls?: ResponseUrlTracker;
  /** Largest upscale the generators make (`upscaleMaxSide`): no Upscale button past it. */
  upscaleMaxSide?: number;
}

const capitalized = (text: string) => `${text.charAt(0).toUpperCase()}${text.slice(1)}`;

function slackError(err: unknown): string | undefined {
  return (err as { data?: { error?: string } } | null)?.data?.error;
}

/** How many status messages' last shown line is remembered (to skip repeats). */
const SHOWN_MAX = 2000;

/** Delivers job events into Slack conversations. */
export class SlackDeliverer implements ChatDeliverer {
  readonly platform = 'slack' as const;
  private readonly client: WebClient;
  private readonly droppable: WebClient;
  private readonly logger: Logger;
  private readonly opts: SlackDelivererOptions;
  private readonly budget: SlackRateBudget;
  private readonly responseUrls: ResponseUrlTracker;
  /** The context line each status message shows now, by ts. */
  private readonly shown = new Map<string, string>();

  constructor(opts: SlackDelivererOptions) {
    this.client = opts.client;
    this.droppable = opts.droppableClient ?? opts.client;
    this.logger = opts.logger;
    this.opts = opts;
    this.budget = opts.budget ?? new SlackRateBudget(opts.now ? { now: opts.now } : {});
    this.responseUrls = opts.responseUrls ?? new ResponseUrlTracker();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Output safety `review`: the held image, blurred, with Approve / Reject for moderators. */
  async postForReview(held: HeldImage): Promise<void> {
    await postSlackReview(this.client, this.budget, held);
  }

  async deliver(target: ReplyTarget, event: DeliveryEvent): Promise<void> {
    if (target.platform !== 'slack') return;
    const prompt = event.prompt ?? '';
    switch (event.state) {
      case 'queued': {
        const line = queuedLine(event.position);
        await this.editStatus(
          target,
          statusMessage(target.userId, prompt, line, event.jobId),
          line,
          'position',
        );
        return;
      }
      case 'generating': {
        // A new percentage is the first edit to drop when the tier runs short.
        const line = generatingLine(event.progress);
        await this.editStatus(
          target,
          statusMessage(target.userId, prompt, line, event.jobId),
          line,
          event.progress === undefined ? 'progress' : 'percent',
        );
        return;
      }
      case 'done':
        if (event.beside) await this.deliverBeside(target, event);
        else await this.deliverImage(target, event);
        return;
      case 'cancelled':
        await this.deliverCancelled(target, event);
        return;
      case 'failed':
      case 'expired': {
        const problem = event.error ?? {
          code: event.state === 'expired' ? 'JOB_EXPIRED' : 'GENERATION_FAILED',
          message: event.state === 'expired' ? 'the job expired' : 'generation failed',
        };
        if (event.beside) await this.tell(target, `${capitalized(problem.message)}.`);
        else await this.deliverFailure(target, event, problem);
        return;
      }
    }
  }

  /**
   * The status message says Cancelled (with Retry for a plain generate), its one final word:
   * whoever pressed Cancel was answered already, and the status is where the job lived.
   */
  private async deliverCancelled(target: SlackTarget, event: DeliveryEvent): Promise<void> {
    const fromImage = event.task === 'vary' || event.task === 'upscale';
    const message = cancelledMessage(target.userId, this.spec(event, true), { retry: !fromImage });
    try {
      await this.setStatus(target, message, true);
    } catch (err) {
      this.logger.warn({ err, channel: target.channelId }, 'slack cancelled card not shown');
      await this.tell(
        target,
        `Your image “${escapeTruncated(event.prompt ?? '', 200)}” was cancelled.`,
      );
    }
  }

  /** Tell the job's user something only they see. */
  private async tell(target: SlackTarget, text: string): Promise<void> {
    await tellUser(
      this.client,
      this.logger,
      {
        channelId: target.channelId,
        userId: target.userId,
        responseUrl: target.responseUrl,
        responseUrlIssuedAt: target.responseUrlIssuedAt,
      },
      text,
      { now: this.now(), responseUrls: this.responseUrls },
    );
  }

  /**
   * A moderator approved one held image of a job already answered: it goes up in the job's
   * thread with a comment saying so; the status card (the job's other images) stays as it is.
   */
  private async deliverBeside(target: SlackTarget, event: DeliveryEvent): Promise<void> {
    const image = event.images?.[0];
    const beside = event.beside!;
    if (!image) throw new Error('a done event without an image');
    const prompt = event.prompt ?? '';
    const which = beside.of > 1 ? `image ${beside.index + 1} of ${beside.of}` : 'the image';
    const preview = await previewable(image.bytes, image.contentType);
    const of = beside.of > 1 ? ` (${beside.index + 1} of ${beside.of})` : '';
    try {
      await this.share(
        target,
        {
          channelId: target.channelId,
          threadTs: target.inline ? target.threadTs : (target.threadTs ?? target.statusTs),
          initialComment: withPrompt(
            `<@${target.userId}> a moderator approved ${which} of “`,
            prompt,
            '”',
            3000,
          ),
        },
        [
          {
            bytes: preview?.bytes ?? image.bytes,
            filename: `imagine-${image.seed}.${preview?.extension ?? 'webp'}`,
            title: `${truncate(prompt, 240)}${of}`,
            altText: `${imageAltText(prompt, ALT_TEXT_MAX.slack - of.length)}${of}`,
          },
        ],
      );
    } catch (err) {
      this.logger.error({ err, channel: target.channelId }, 'slack approved image upload failed');
      const reason = slackError(err) ?? (err instanceof Error ? err.message : String(err));
      await this.tell(
        target,
        `A moderator approved ${which} of “${escapeTruncated(prompt, 200)}”, but Slack refused the upload (${reason}).`,
      );
    }
  }

  /**
   * Share files in the job's conversation. chat:write.public let the status message into a
   * public channel the bot never joined; a file share needs membership, so join
   * (channels:join) and share again.
   */
  private async share(
    target: SlackTarget,
    share: Parameters<typeof uploadFiles>[2],
    files: Parameters<typeof uploadFiles>[3],
  ): Promise<Awaited<ReturnType<typeof uploadFiles>>> {
    try {
      return await uploadFiles(this.client, this.budget, share, files);
    } catch (err) {
      if (slackError(err) !== 'not_in_channel') throw err;
      await this.budget.take('conversations.join');
      await this.client.conversations.join({ channel: target.channelId });
      return await uploadFiles(this.client, this.budget, share, files);
    }
  }

  /**
   * A droppable status edit: skipped when the message already shows `line`, when the tier's
   * share for `priority` is spent, or when Slack answers 429 (the budget then holds the method
   * for Retry-After). Never waits, so it never holds up a result.
   */
  private async editStatus(
    target: SlackTarget,
    message: { text: string; blocks: types.KnownBlock[] },
    line: string,
    priority: Exclude<SlackCallPriority, 'final'>,
  ): Promise<void> {
    const ts = target.statusTs;
    if (!ts) return;
    if (this.shown.get(ts) === line) return;
    if (!this.budget.tryTake('chat.update', priority)) {
      this.logger.debug({ channel: target.channelId, priority }, 'slack status edit dropped');
      return;
    }
    try {
      await this.droppable.chat.update({
        channel: target.channelId,
        ts,
        text: message.text,
        blocks: message.blocks,
      });
      this.remember(ts, line);
    } catch (err) {
      const retryAfter = (err as { code?: string; retryAfter?: number }).retryAfter;
      if ((err as { code?: string }).code === 'slack_webapi_rate_limited_error') {
        this.budget.pause('chat.update', retryAfter ?? 60);
        this.logger.warn({ retryAfter }, 'slack chat.update rate limited; status edits paused');
        return;
      }
      // A deleted status message is posted again only for final states.
      if (slackError(err) === 'message_not_found') return;
      throw err;
    }
  }

  private remember(ts: string, line: string): void {
    this.shown.delete(ts);
    this.shown.set(ts, line);
    if (this.shown.size > SHOWN_MAX) this.shown.delete(this.shown.keys().next().value!);
  }

  /** The status message shows the error and Retry, and the user is told what to do. */
  private async deliverFailure(
    target: SlackTarget,
    event: DeliveryEvent,
    problem: { code: string; message: string },
  ): Promise<void> {
    const prompt = event.prompt ?? '';
    // A vary or upscale has no Retry: the card's Retry value is a plain generate (prompt, seed,
    // size) and would drop the source image. The button that started it is the retry.
    const fromImage = event.task === 'vary' || event.task === 'upscale';
    const general = adviceFor(problem);
    const advice = fromImage
      ? general.replace(/Press Retry/g, 'Press the button on the image again')
      : general;
    try {
      await this.setStatus(
        target,
        failedMessage(target.userId, this.spec(event, true), advice, { retry: !fromImage }),
        true,
      );
    } catch (err) {
      // The ephemeral below still reaches the user.
      this.logger.warn({ err, channel: target.channelId }, 'slack failure card not shown');
    }
    await tellUser(
      this.client,
      this.logger,
      {
        channelId: target.channelId,
        userId: target.userId,
        responseUrl: target.responseUrl,
        responseUrlIssuedAt: target.responseUrlIssuedAt,
      },
      `Your image “${escapeTruncated(prompt, 200)}” didn't make it. ${advice}`,
      { now: this.now(), responseUrls: this.responseUrls },
    );
  }

  private spec(event: DeliveryEvent, keepSeed: boolean): JobSpec {
    return {
      prompt: event.prompt ?? '',
      ...(keepSeed && event.seed !== undefined ? { seed: event.seed } : {}),
      width: event.width,
      height: event.height,
      count: event.count ?? 1,
      ...(event.model ? { model: event.model } : {}),
    };
  }

  /**
   * Upload every image of the job together (one `files.completeUploadExternal`: one message in
   * the thread holding all of them, each with its alt text), then turn the status message into
   * the result card: previews, facts, U/V/Re-roll.
   */
  private async deliverImage(target: SlackTarget, event: DeliveryEvent): Promise<void> {
    const images = event.images ?? [];
    if (images.length === 0) throw new Error('a done event without an image');
    const prompt = event.prompt ?? '';
    const n = images.length;
    const demo = this.opts.isDemo(event.generator);
    const threadTs = target.inline ? target.threadTs : (target.threadTs ?? target.statusTs);
    // WebP gets no slack_file preview: re-encoded as PNG, it does.
    const prepared = await Promise.all(
      images.map(async (image, i) => {
        // Slack has no spoilers: an image output safety flagged goes up blurred, and says why.
        const spoiler = image.spoiler === true;
        const preview = spoiler
          ? { bytes: await blurredCopy(image.bytes), extension: 'png' as const }
          : await previewable(image.bytes, image.contentType);
        const of = n > 1 ? ` (${i + 1} of ${n})` : '';
        return {
          image,
          spoiler,
          preview: preview !== undefined,
          file: {
            bytes: preview?.bytes ?? image.bytes,
            filename: `imagine-${image.seed}${spoiler ? '-blurred' : ''}.${preview?.extension ?? 'webp'}`,
            title: `${truncate(prompt, 240)}${of}`,
            altText: `${imageAltText(prompt, ALT_TEXT_MAX.slack - of.length)}${of}`,
          },
        };
      }),
    );
    const anySpoiler = prepared.some((p) => p.spoiler);
    const job = {
      jobId: event.jobId,
      task: event.task ?? 'generate',
      prompt,
      seed: event.seed ?? images[0]!.seed,
      width: event.width ?? images[0]!.width,
      height: event.height ?? images[0]!.height,
      count: n,
      steps: event.steps,
      strength: event.strength,
      inputFileId: target.inputFileId,
      inputWidth: event.source?.width,
      inputHeight: event.source?.height,
      model: event.model,
    };
    const facts = {
      userId: target.userId,
      seconds: event.generationMs === undefined ? undefined : event.generationMs / 1000,
      demo,
      upscaleMaxSide: this.opts.upscaleMaxSide,
    };
    const factsText = cardFactsLine(
      job,
      images.map((i) => ({ ...i, fileId: undefined })),
      facts,
    );
    const share = {
      channelId: target.channelId,
      threadTs,
      // The comment is mrkdwn: an unescaped prompt could ping <!channel> or hide a link.
      initialComment: withPrompt(
        `<@${target.userId}> `,
        prompt,
        `\n${factsText}${anySpoiler ? `\n_This workspace's safety setting flagged ${n > 1 ? 'an image' : 'the image'}, so it is shown blurred._` : ''}${event.withheld ? `\n_${withheldLine(event.withheld, 'workspace')}_` : ''}`,
        3000,
      ),
    };
    const files = prepared.map((p) => p.file);
    let uploaded: Awaited<ReturnType<typeof uploadFiles>>;
    try {
      uploaded = await this.share(target, share, files);
    } catch (err) {
      // Nothing else would touch the status message again: it would say "Generating…" forever.
      this.logger.error({ err, channel: target.channelId }, 'slack image upload failed');
      const reason = slackError(err) ?? (err instanceof Error ? err.message : String(err));
      await this.deliverFailure(target, event, {
        code: 'DELIVERY_FAILED',
        message: `Slack refused the image upload (${reason})`,
      });
      return;
    }
    const cardImages = prepared.map((p, i) => ({
      seed: p.image.seed,
      width: p.image.width,
      height: p.image.height,
      fileId: uploaded[i]?.id,
      preview: p.preview,
      ...(p.spoiler ? { spoiler: true } : {}),
    }));
    try {
      await this.setStatus(target, loopResultMessage(job, cardImages, facts), true);
    } catch (err) {
      // A preview of a file still being processed can be refused; the card without it is fine.
      if (slackError(err) !== 'invalid_blocks') throw err;
      const bare = cardImages.map((i) => ({ ...i, preview: false }));
      await this.setStatus(target, loopResultMessage(job, bare, facts), true);
    }
  }

  /**
   * Update the status message to a final state; if it is gone (deleted by a user), post the
   * message afresh so the user still gets the buttons.
   */
  private async setStatus(
    target: SlackTarget,
    message: { text: string; blocks: types.KnownBlock[] },
    final: boolean,
  ): Promise<void> {
    const { blocks } = message;
    if (target.statusTs) {
      try {
        await this.budget.take('chat.update');
        await this.client.chat.update({
          channel: target.channelId,
          ts: target.statusTs,
          text: message.text,
          blocks,
        });
        this.shown.delete(target.statusTs);
        return;
      } catch (err) {
        if (slackError(err) !== 'message_not_found') throw err;
        this.logger.info({ channel: target.channelId }, 'slack status message is gone');
      }
    }
    if (!final) return;
    await this.client.chat.postMessage({
      channel: target.channelId,
      text: message.text,
      blocks,
      ...(target.threadTs ? { thread_ts: target.threadTs } : {}),
    });
  }
}
