/**
 * Delivers job events to Discord: edits the interaction's message through the status line
 * (queued with the number ahead → generating) and finally to the image, attached from memory,
 * with its embed and buttons. Past the 15-minute token window the result goes to the channel
 * through the bot token instead, replying to / mentioning the user.
 */
import type { APIMessage } from 'discord.js';
import type { Logger } from 'pino';
import type { ChatDeliverer, DeliveryEvent } from '../../contracts/delivery.ts';
import { ImagineError } from '../../contracts/errors.ts';
import { isTerminal } from '../../contracts/push.ts';
import type { DiscordTarget, ReplyTarget } from '../../contracts/seal.ts';
import {
  type DiscordApi,
  type DiscordFile,
  deliveryError,
  isTokenGone,
  isTooLarge,
} from './api.ts';
import { fitImage } from './fit-image.ts';
import {
  DELIVERY_FAILED,
  doneButtons,
  failureLine,
  jobEmbed,
  retryButtons,
  statusLine,
} from './messages.ts';

/** Interaction tokens work for 15 minutes. */
export const TOKEN_LIFETIME_MS = 15 * 60 * 1000;
/** Default upload limit when the interaction did not say (10 MiB). */
export const DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024;

/** Options of {@link DiscordDeliverer}. */
export interface DiscordDelivererOptions {
  api: DiscordApi;
  logger: Logger;
  now?: () => number;
  /** Least time between two status edits of one job (default 1000 ms). */
  statusIntervalMs?: number;
  /** Status edits per second across all jobs (default 20; Discord's global limit is 50/s). */
  statusEditsPerSecond?: number;
  /** Safety margin before the token's end after which the channel is used (default 30 s). */
  tokenMarginMs?: number;
}

type Payload = {
  content: string;
  embeds: ReturnType<typeof jobEmbed>[];
  components: ReturnType<typeof doneButtons>;
  attachments?: Array<{ id: number; filename: string }>;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Spaces status edits: per job, and globally with a token bucket, so a burst of jobs never
 * trips Discord's limits. Final states never wait.
 */
class StatusThrottle {
  private readonly lastEdit = new Map<string, number>();
  private tokens: number;
  private refilledAt: number;
  private readonly perJobMs: number;
  private readonly rate: number;
  private readonly now: () => number;

  constructor(perJobMs: number, rate: number, now: () => number) {
    this.perJobMs = perJobMs;
    this.rate = rate;
    this.now = now;
    this.tokens = rate;
    this.refilledAt = now();
  }

  async wait(jobId: string): Promise<void> {
    const last = this.lastEdit.get(jobId);
    if (last !== undefined) {
      const due = last + this.perJobMs - this.now();
      if (due > 0) await sleep(due);
    }
    for (;;) {
      const t = this.now();
      this.tokens = Math.min(this.rate, this.tokens + ((t - this.refilledAt) / 1000) * this.rate);
      this.refilledAt = t;
      if (this.tokens >= 1) break;
      await sleep(Math.ceil(((1 - this.tokens) / this.rate) * 1000));
    }
    this.tokens -= 1;
    this.lastEdit.set(jobId, this.now());
  }

  forget(jobId: string): void {
    this.lastEdit.delete(jobId);
  }
}

/** The Discord {@link ChatDeliverer}. */
export class DiscordDeliverer implements ChatDeliverer {
  readonly platform = 'discord' as const;
  private readonly api: DiscordApi;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly throttle: StatusThrottle;
  private readonly tokenMarginMs: number;

  constructor(opts: DiscordDelivererOptions) {
    this.api = opts.api;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.throttle = new StatusThrottle(
      opts.statusIntervalMs ?? 1000,
      opts.statusEditsPerSecond ?? 20,
      this.now,
    );
    this.tokenMarginMs = opts.tokenMarginMs ?? 30_000;
  }

  async deliver(target: ReplyTarget, event: DeliveryEvent): Promise<void> {
    if (target.platform !== 'discord') return;
    try {
      await this.deliverToDiscord(target, event);
    } catch (err) {
      throw deliveryError(err);
    }
  }

  private async deliverToDiscord(target: DiscordTarget, event: DeliveryEvent): Promise<void> {
    const tokenAlive = this.now() < target.issuedAt + TOKEN_LIFETIME_MS - this.tokenMarginMs;
    if (!isTerminal(event.state)) {
      // A status nobody can see any more is not worth a channel message.
      if (!tokenAlive) return;
      await this.throttle.wait(event.jobId);
      await this.edit(target, {
        content: statusLine(event),
        embeds: [jobEmbed(event)],
        components: [],
      });
      return;
    }
    this.throttle.forget(event.jobId);
    // Inside the safety margin the token usually still works: with no channel to fall back on,
    // trying it beats giving up.
    const tryToken = tokenAlive || !this.canPostToChannel(target);
    if (event.state === 'done' && event.images?.[0]) {
      try {
        await this.deliverImage(target, event, tryToken);
      } catch (err) {
        // Never leave the user looking at "Generating…": say so, with Retry.
        const failed: DeliveryEvent = {
          ...event,
          state: 'failed',
          images: undefined,
          error: { code: DELIVERY_FAILED, message: 'Discord did not accept it' },
        };
        await this.deliverFailure(target, failed, tryToken).catch((e) =>
          this.logger.warn({ jobId: event.jobId, err: e }, 'could not report a failed delivery'),
        );
        throw err;
      }
      return;
    }
    await this.deliverFailure(target, event, tryToken);
  }

  private canPostToChannel(target: DiscordTarget): boolean {
    return Boolean(target.channelId) && this.api.hasToken;
  }

  private async deliverFailure(
    target: DiscordTarget,
    event: DeliveryEvent,
    tokenAlive: boolean,
  ): Promise<void> {
    const payload: Payload = {
      content: failureLine(event),
      embeds: [jobEmbed(event)],
      components: retryButtons(event),
    };
    if (tokenAlive) {
      try {
        await this.edit(target, payload);
        return;
      } catch (err) {
        if (!isTokenGone(err)) throw err;
      }
    }
    await this.toChannel(target, payload);
  }

  private async deliverImage(
    target: DiscordTarget,
    event: DeliveryEvent,
    tokenAlive: boolean,
  ): Promise<void> {
    const image = event.images![0]!;
    let limit = target.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_LIMIT;
    for (let attempt = 0; attempt < 3; attempt++) {
      const fit = await fitImage(image.bytes, image.contentType, limit);
      if (fit.reencoded)
        this.logger.info(
          { jobId: event.jobId, from: image.bytes.length, to: fit.bytes.length, limit },
          'image re-encoded to fit the upload limit',
        );
      const name = `imagine-${event.seed ?? event.jobId}.${fit.ext}`;
      const file: DiscordFile = { name, data: fit.bytes, contentType: fit.contentType };
      const payload: Payload = {
        content: '',
        embeds: [jobEmbed(event, name)],
        components: doneButtons(event),
        attachments: [{ id: 0, filename: name }],
      };
      try {
        if (tokenAlive) {
          try {
            await this.edit(target, payload, [file]);
            return;
          } catch (err) {
            if (!isTokenGone(err)) throw err;
            this.logger.info({ jobId: event.jobId }, 'interaction token gone; posting to channel');
          }
        }
        await this.toChannel(target, payload, [file]);
        return;
      } catch (err) {
        // The limit we were told was wrong (or the channel's is lower): halve it and go again.
        if (!isTooLarge(err)) throw err;
        limit = Math.floor(Math.min(limit, fit.bytes.length) / 2);
      }
    }
    throw new ImagineError('DELIVERY_FAILED', 'image still too large after re-encoding');
  }

  private edit(
    target: DiscordTarget,
    payload: Payload,
    files?: DiscordFile[],
  ): Promise<APIMessage> {
    const messageId = target.followUp && target.messageId ? target.messageId : '@original';
    return this.api.editMessage(
      target.applicationId,
      target.interactionToken,
      messageId,
      payload,
      files,
    );
  }

  /** After the token window: a new channel message, replying to the job's message when known. */
  private async toChannel(
    target: DiscordTarget,
    payload: Payload,
    files?: DiscordFile[],
  ): Promise<void> {
    if (!target.channelId || !this.canPostToChannel(target))
      throw new ImagineError(
        'DELIVERY_FAILED',
        'interaction token expired and no bot token or channel to post to',
      );
    await this.api.channelMessage(
      target.channelId,
      {
        ...payload,
        content: `<@${target.userId}> ${payload.content || 'your image is ready.'}`.trim(),
        allowed_mentions: { users: [target.userId] },
        ...(target.messageId
          ? { message_reference: { message_id: target.messageId, fail_if_not_exists: false } }
          : {}),
      },
      files,
    );
  }
}
