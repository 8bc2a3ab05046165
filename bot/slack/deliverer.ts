/**
 * Slack delivery: keeps the job's status message current (queued · N ahead → generating),
 * then uploads the image from memory with `filesUploadV2` into the status message's thread
 * (beside it in DMs) and turns the status message into the result card: preview, facts,
 * Re-roll and Variations. A failure turns it into the error with Retry and tells the user.
 *
 * Why the thread: in a busy channel each job stays one message (the card, with an inline
 * preview), and re-rolls and variations gather under it instead of flooding the channel.
 */
import type { types } from '@slack/bolt';
import type { WebClient } from '@slack/web-api';
import type { Logger } from 'pino';
import type { ChatDeliverer, DeliveryEvent } from '../../contracts/delivery.ts';
import type { ReplyTarget, SlackTarget } from '../../contracts/seal.ts';
import {
  escapeMrkdwn,
  factsLine,
  failedMessage,
  GENERATING_LINE,
  type JobSpec,
  queuedLine,
  resultMessage,
  statusMessage,
  truncate,
} from './blocks.ts';
import { adviceFor, tellUser } from './replies.ts';

/** Options of {@link SlackDeliverer}. */
export interface SlackDelivererOptions {
  client: WebClient;
  logger: Logger;
  /** Whether the generator is the demo one (labelled as such). */
  isDemo(generator: string | undefined): boolean;
  now?: () => number;
}

function extension(contentType: string): string {
  if (contentType === 'image/jpeg') return 'jpg';
  if (contentType === 'image/webp') return 'webp';
  return 'png';
}

function slackError(err: unknown): string | undefined {
  return (err as { data?: { error?: string } } | null)?.data?.error;
}

/** Delivers job events into Slack conversations. */
export class SlackDeliverer implements ChatDeliverer {
  readonly platform = 'slack' as const;
  private readonly client: WebClient;
  private readonly logger: Logger;
  private readonly opts: SlackDelivererOptions;

  constructor(opts: SlackDelivererOptions) {
    this.client = opts.client;
    this.logger = opts.logger;
    this.opts = opts;
  }

  async deliver(target: ReplyTarget, event: DeliveryEvent): Promise<void> {
    if (target.platform !== 'slack') return;
    const prompt = event.prompt ?? '';
    switch (event.state) {
      case 'queued':
        await this.setStatus(
          target,
          statusMessage(target.userId, prompt, queuedLine(event.position)),
          false,
        );
        return;
      case 'generating':
        await this.setStatus(target, statusMessage(target.userId, prompt, GENERATING_LINE), false);
        return;
      case 'done':
        await this.deliverImage(target, event);
        return;
      case 'failed':
      case 'expired': {
        const problem = event.error ?? {
          code: event.state === 'expired' ? 'JOB_EXPIRED' : 'GENERATION_FAILED',
          message: event.state === 'expired' ? 'the job expired' : 'generation failed',
        };
        await this.deliverFailure(target, event, problem);
        return;
      }
    }
  }

  /** The status message shows the error and Retry, and the user is told what to do. */
  private async deliverFailure(
    target: SlackTarget,
    event: DeliveryEvent,
    problem: { code: string; message: string },
  ): Promise<void> {
    const prompt = event.prompt ?? '';
    const advice = adviceFor(problem);
    try {
      await this.setStatus(
        target,
        failedMessage(target.userId, this.spec(event, true), advice),
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
      `Your image “${escapeMrkdwn(truncate(prompt, 200))}” didn't make it. ${advice}`,
      (this.opts.now ?? Date.now)(),
    );
  }

  private spec(event: DeliveryEvent, keepSeed: boolean): JobSpec {
    return {
      prompt: event.prompt ?? '',
      ...(keepSeed && event.seed !== undefined ? { seed: event.seed } : {}),
      width: event.width,
      height: event.height,
    };
  }

  private async deliverImage(target: SlackTarget, event: DeliveryEvent): Promise<void> {
    const image = event.images?.[0];
    if (!image) throw new Error('a done event without an image');
    const facts = {
      userId: target.userId,
      prompt: event.prompt ?? '',
      seed: event.seed,
      width: event.width,
      height: event.height,
      seconds: event.generationMs === undefined ? undefined : event.generationMs / 1000,
      demo: this.opts.isDemo(event.generator),
    };
    const threadTs = target.inline ? target.threadTs : (target.threadTs ?? target.statusTs);
    const uploadOnce = () =>
      this.client.filesUploadV2({
        ...(threadTs
          ? { channel_id: target.channelId, thread_ts: threadTs }
          : { channel_id: target.channelId }),
        file: image.bytes,
        filename: `imagine-${event.seed ?? event.jobId}.${extension(image.contentType)}`,
        title: truncate(facts.prompt, 250),
        alt_text: truncate(facts.prompt, 1000),
        // The comment is mrkdwn: an unescaped prompt could ping <!channel> or hide a link.
        initial_comment: `<@${target.userId}> ${truncate(escapeMrkdwn(facts.prompt), 3000)}\n${factsLine(facts)}`,
      });
    let upload: Awaited<ReturnType<typeof uploadOnce>>;
    try {
      try {
        upload = await uploadOnce();
      } catch (err) {
        // chat:write.public let the status message into a public channel the bot never joined;
        // a file share needs membership, so join (channels:join) and share again.
        if (slackError(err) !== 'not_in_channel') throw err;
        await this.client.conversations.join({ channel: target.channelId });
        upload = await uploadOnce();
      }
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
    const fileId = (upload.files as Array<{ files?: Array<{ id?: string }> }> | undefined)?.[0]
      ?.files?.[0]?.id;
    // Re-roll keeps prompt and size and draws a new seed.
    const spec = this.spec(event, true);
    const card = resultMessage(facts, spec, fileId);
    try {
      await this.setStatus(target, card, true);
    } catch (err) {
      // A preview of a file still being processed can be refused; the card without it is fine.
      if (fileId && slackError(err) === 'invalid_blocks') {
        await this.setStatus(target, resultMessage(facts, spec, undefined), true);
      } else throw err;
    }
  }

  /**
   * Update the status message; if it is gone (deleted by a user) and this matters (a final
   * state), post the message afresh so the user still gets the buttons.
   */
  private async setStatus(
    target: SlackTarget,
    message: { text: string; blocks: types.KnownBlock[] },
    final: boolean,
  ): Promise<void> {
    const { blocks } = message;
    if (target.statusTs) {
      try {
        await this.client.chat.update({
          channel: target.channelId,
          ts: target.statusTs,
          text: message.text,
          blocks,
        });
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
