/**
 * Delivers job events to Discord: edits the interaction's message through the status line
 * (queued with the number ahead → generating) and finally to the image, attached from memory,
 * with its embed and buttons. Past the 15-minute token window the result goes to the channel
 * through the bot token instead, replying to / mentioning the user.
 */

import { DiscordAPIError } from '@discordjs/rest';
import type { APIMessage } from 'discord.js';
import type { Logger } from 'pino';
import {
  ALT_TEXT_MAX,
  type ChatDeliverer,
  type DeliveryEvent,
  type HeldImage,
  imageAltText,
} from '../../contracts/delivery.ts';
import { ImagineError } from '../../contracts/errors.ts';
import { isTerminal } from '../../contracts/push.ts';
import { withheldLine } from '../../contracts/safety.ts';
import type { DiscordTarget, ReplyTarget } from '../../contracts/seal.ts';
import {
  DISCORD_ERRORS,
  type DiscordApi,
  type DiscordFile,
  deliveryError,
  isMissingPermission,
  isTooLarge,
  isWebhookGone,
} from './api.ts';
import { fitImage } from './fit-image.ts';
import {
  cancelButtons,
  DELIVERY_FAILED,
  doneButtons,
  escapeMarkdown,
  failureLine,
  imageFileName,
  jobEmbed,
  retryButtons,
  reviewButtons,
  statusLine,
} from './messages.ts';

/** Interaction tokens work for 15 minutes. */
export const TOKEN_LIFETIME_MS = 15 * 60 * 1000;
/** Default upload limit when the interaction did not say (10 MiB). */
export const DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024;
/**
 * What a bot message in a guild may carry, by the guild's boost tier (`premium_tier` 0-3).
 * An interaction's `attachment_size_limit` is the better of the user's Nitro and the guild's
 * boost, so it can exceed what a channel post accepts.
 */
export const GUILD_UPLOAD_LIMITS = [10, 10, 50, 100].map((mib) => mib * 1024 * 1024);
/** How long a guild's upload limit is trusted before it is asked again. */
const GUILD_LIMIT_TTL_MS = 10 * 60 * 1000;
/** Most jobs whose webhook is remembered as gone (the oldest are forgotten first). */
const GONE_MAX = 10_000;

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
  /** Largest upscale the generators make (`upscaleMaxSide`): no Upscale button past it. */
  upscaleMaxSide?: number;
}

type Payload = {
  content: string;
  embeds: ReturnType<typeof jobEmbed>[];
  components: ReturnType<typeof doneButtons>;
  attachments?: Array<{ id: number; filename: string; description?: string }>;
};

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

  /**
   * Milliseconds until the job may be edited (0: now): a full interval after its last edit,
   * with a token in the global bucket.
   */
  dueIn(jobId: string): number {
    const t = this.now();
    this.refill(t);
    const last = this.lastEdit.get(jobId);
    const perJob = last === undefined ? 0 : Math.max(0, last + this.perJobMs - t);
    const global = this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.rate) * 1000);
    return Math.max(perJob, global);
  }

  /** Count an edit of the job now; false (nothing counted) when it is not yet due. */
  tryTake(jobId: string): boolean {
    if (this.dueIn(jobId) > 0) return false;
    this.tokens -= 1;
    this.lastEdit.set(jobId, this.now());
    return true;
  }

  forget(jobId: string): void {
    this.lastEdit.delete(jobId);
  }

  private refill(t: number): void {
    this.tokens = Math.min(this.rate, this.tokens + ((t - this.refilledAt) / 1000) * this.rate);
    this.refilledAt = t;
  }
}

/**
 * A job's next status edit: the newest status not yet shown (a newer one replaces it, so the
 * message never steps back to an older one), the timer that shows it when the job may be
 * edited again, and the deliveries of state changes waiting for it to be shown.
 */
interface PendingStatus {
  target: DiscordTarget;
  event: DeliveryEvent;
  timer: NodeJS.Timeout | undefined;
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

/** The Discord {@link ChatDeliverer}. */
export class DiscordDeliverer implements ChatDeliverer {
  readonly platform = 'discord' as const;
  private readonly api: DiscordApi;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly throttle: StatusThrottle;
  private readonly tokenMarginMs: number;
  private readonly upscaleMaxSide: number | undefined;
  /** Jobs whose interaction webhook answered 404 or a dead token: never called again. */
  private readonly webhookGone = new Set<string>();
  private readonly guildLimits = new Map<string, { limit: number; at: number }>();
  /** The status waiting for the job's next edit slot, by job (replaced by a newer one). */
  private readonly pending = new Map<string, PendingStatus>();

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
    this.upscaleMaxSide = opts.upscaleMaxSide;
  }

  async deliver(target: ReplyTarget, event: DeliveryEvent): Promise<void> {
    if (target.platform !== 'discord') return;
    try {
      await this.deliverToDiscord(target, event);
    } catch (err) {
      throw deliveryError(err);
    } finally {
      if (isTerminal(event.state)) this.webhookGone.delete(event.jobId);
    }
  }

  /**
   * Post an image held for review to the moderators' channel (bot token): a spoiler with the
   * prompt, who asked, where and why, and Approve / Reject buttons for moderators.
   */
  async postForReview(held: HeldImage): Promise<void> {
    const fit = await fitImage(held.image.bytes, held.image.contentType, DEFAULT_ATTACHMENT_LIMIT);
    const name = `SPOILER_imagine-${held.image.seed}.${fit.ext}`;
    const who = held.userId ? `<@${held.userId}>` : 'someone';
    const where =
      held.target.platform === 'discord' && held.target.channelId
        ? ` in <#${held.target.channelId}>`
        : '';
    const why =
      held.score === undefined
        ? ''
        : ` (score ${held.score.toFixed(2)}, threshold ${held.threshold})`;
    const prompt = escapeMarkdown(held.prompt ?? '').slice(0, 1500);
    await this.api.channelMessage(
      held.reviewChannelId,
      {
        content: `🛡️ Held for review: an image for ${who}${where}, flagged by the safety check${why}.\n> ${prompt}`,
        attachments: [
          {
            id: 0,
            filename: name,
            description: imageAltText(held.prompt, ALT_TEXT_MAX.discord),
          },
        ],
        components: reviewButtons(held.jobId, held.index),
        allowed_mentions: { parse: [] },
      },
      [{ name, data: fit.bytes, contentType: fit.contentType }],
    );
  }

  private async deliverToDiscord(target: DiscordTarget, event: DeliveryEvent): Promise<void> {
    const tokenAlive = this.now() < target.issuedAt + TOKEN_LIFETIME_MS - this.tokenMarginMs;
    if (!isTerminal(event.state)) {
      // A status nobody can see any more is not worth a channel message.
      if (!tokenAlive || this.webhookGone.has(event.jobId)) return;
      // One status edit per job per interval, the newest status winning: a new percentage never
      // waits in the job's lane (the final image would wait behind it); a change of state waits
      // until it (or a newer status) is shown.
      const shown = this.showStatus(target, event);
      if (event.state === 'generating' && event.progress !== undefined) {
        shown.catch((err) =>
          this.logger.debug({ err, jobId: event.jobId }, 'progress edit failed'),
        );
        return;
      }
      await shown;
      return;
    }
    this.cancelLater(event.jobId);
    this.throttle.forget(event.jobId);
    // Inside the safety margin the token usually still works: with no channel to fall back on,
    // trying it beats giving up.
    const viaWebhook = tokenAlive || !this.canPostToChannel(target);
    if (event.beside) {
      await this.deliverBeside(target, event, tokenAlive && !this.webhookGone.has(event.jobId));
      return;
    }
    if (event.state === 'done' && event.images?.[0]) {
      try {
        await this.deliverImage(target, event, viaWebhook);
      } catch (err) {
        // Never leave the user looking at "Generating…": say so, with Retry.
        const failed: DeliveryEvent = {
          ...event,
          state: 'failed',
          images: undefined,
          error: { code: DELIVERY_FAILED, message: 'Discord did not accept it' },
        };
        await this.deliverFailure(target, failed, viaWebhook).catch((e) =>
          this.logger.warn({ jobId: event.jobId, err: e }, 'could not report a failed delivery'),
        );
        throw err;
      }
      return;
    }
    await this.deliverFailure(target, event, viaWebhook);
  }

  /** A status edit: the line, the embed and the Cancel button. */
  private async editStatus(target: DiscordTarget, event: DeliveryEvent): Promise<void> {
    if (this.webhookGone.has(event.jobId)) return;
    try {
      await this.edit(target, {
        content: statusLine(event),
        embeds: [jobEmbed(event)],
        components: cancelButtons(event.jobId),
      });
    } catch (err) {
      if (!this.noteWebhookGone(event.jobId, err)) throw err;
    }
  }

  /**
   * Show a status as soon as the job may be edited, replacing any status still waiting (its
   * waiters then wait for this one). Resolves once it, or a newer status, has been shown; a
   * final state arriving first resolves it unshown.
   */
  private showStatus(target: DiscordTarget, event: DeliveryEvent): Promise<void> {
    const { jobId } = event;
    const shown = Promise.withResolvers<void>();
    const waiting = this.pending.get(jobId);
    if (waiting) {
      waiting.target = target;
      waiting.event = event;
      waiting.waiters.push(shown);
    } else {
      this.pending.set(jobId, { target, event, timer: undefined, waiters: [shown] });
      this.flushStatus(jobId);
    }
    return shown.promise;
  }

  /** Edit the job's waiting status now if it may be, else try again when it may. */
  private flushStatus(jobId: string): void {
    const next = this.pending.get(jobId);
    if (!next) return;
    next.timer = undefined;
    const due = this.throttle.dueIn(jobId);
    // A timer can fire a millisecond before the clock says the interval is over: try again.
    if (due > 0 || !this.throttle.tryTake(jobId)) {
      next.timer = setTimeout(() => this.flushStatus(jobId), Math.max(1, due));
      next.timer.unref();
      return;
    }
    this.pending.delete(jobId);
    this.editStatus(next.target, next.event).then(
      () => {
        for (const w of next.waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of next.waiters) w.reject(err);
      },
    );
  }

  /** Drop the job's waiting status (a final state supersedes it); its waiters resolve. */
  private cancelLater(jobId: string): void {
    const next = this.pending.get(jobId);
    if (!next) return;
    if (next.timer) clearTimeout(next.timer);
    this.pending.delete(jobId);
    for (const w of next.waiters) w.resolve();
  }

  private canPostToChannel(target: DiscordTarget): boolean {
    // An ephemeral answer has no public stand-in: past the token window it cannot be delivered.
    return !target.ephemeral && Boolean(target.channelId) && this.api.hasToken;
  }

  /**
   * Remember that a job's webhook is gone (404: message deleted, webhook or interaction
   * unknown; or a dead token) so it is never called again for that job. False for other errors.
   */
  private noteWebhookGone(jobId: string, err: unknown): boolean {
    if (!isWebhookGone(err)) return false;
    if (this.webhookGone.size >= GONE_MAX) {
      const oldest = this.webhookGone.values().next().value;
      if (oldest !== undefined) this.webhookGone.delete(oldest);
    }
    this.webhookGone.add(jobId);
    const deleted = err instanceof DiscordAPIError && err.code === DISCORD_ERRORS.unknownMessage;
    this.logger.info(
      { jobId, discordCode: err instanceof DiscordAPIError ? err.code : undefined },
      deleted
        ? "the job's message was deleted; the result goes to the channel if it can"
        : 'interaction webhook gone; the result goes to the channel if it can',
    );
    return true;
  }

  private async deliverFailure(
    target: DiscordTarget,
    event: DeliveryEvent,
    viaWebhook: boolean,
  ): Promise<void> {
    const payload: Payload = {
      content: failureLine(event),
      embeds: [jobEmbed(event)],
      components: retryButtons(event),
    };
    await this.sendFinal(target, event.jobId, viaWebhook, async () => ({ payload }));
  }

  /**
   * A moderator's decision on one held image of a job already answered: a message of its own
   * beside the reply, never an edit of it. An approved image comes with its embed and buttons
   * (a follow-up while the token lives, else a channel post replying to the job's message); a
   * rejection or a notice is a follow-up only the user sees (past the token, a channel post).
   */
  private async deliverBeside(
    target: DiscordTarget,
    event: DeliveryEvent,
    viaWebhook: boolean,
  ): Promise<void> {
    const beside = event.beside!;
    const which = beside.of > 1 ? `image ${beside.index + 1} of ${beside.of}` : 'the image';
    const image = event.state === 'done' ? event.images?.[0] : undefined;
    const route: Route = viaWebhook || !this.canPostToChannel(target) ? 'webhook' : 'channel';
    let payload: Payload & { flags?: number };
    let files: DiscordFile[] | undefined;
    if (image) {
      const limit =
        route === 'webhook'
          ? (target.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_LIMIT)
          : await this.guildUploadLimit(target.guildId);
      const fit = await fitImage(image.bytes, image.contentType, limit);
      const name = imageFileName(image.seed, fit.ext);
      files = [{ name, data: fit.bytes, contentType: fit.contentType }];
      payload = {
        content: [
          `✅ A moderator approved ${which}.`,
          ...(event.withheld ? [withheldLine(event.withheld, 'server')] : []),
        ].join('\n'),
        embeds: [jobEmbed(event, name)],
        components: doneButtons(event, this.upscaleMaxSide),
        attachments: [
          { id: 0, filename: name, description: imageAltText(event.prompt, ALT_TEXT_MAX.discord) },
        ],
        ...(target.ephemeral ? { flags: 64 } : {}),
      };
    } else {
      const why = event.error?.message ?? `${which} was not delivered`;
      payload = {
        content: `🛡️ ${why.charAt(0).toUpperCase()}${why.slice(1)}.`.slice(0, 1900),
        embeds: [],
        components: [],
        flags: 64,
      };
    }
    if (route === 'webhook') {
      try {
        await this.api.followUp(target.applicationId, target.interactionToken, payload, files);
        return;
      } catch (err) {
        if (!this.noteWebhookGone(event.jobId, err) || !this.canPostToChannel(target)) throw err;
      }
    }
    const { flags: _ephemeral, ...post } = payload;
    await this.toChannel(target, post, files);
  }

  /**
   * The finished images, attached together in one edit of the reply (Discord shows up to four
   * as a mosaic; `attachments` lists every one that should remain), each fitted to the limit.
   */
  private async deliverImage(
    target: DiscordTarget,
    event: DeliveryEvent,
    viaWebhook: boolean,
  ): Promise<void> {
    const images = event.images ?? [];
    // The webhook edit may carry what the interaction announced; a bot message in the channel
    // only what the guild's boost tier allows.
    const limits: Record<Route, number | undefined> = {
      webhook: target.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_LIMIT,
      channel: undefined,
    };
    let last: { route: Route; limit: number; size: number } | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.sendFinal(target, event.jobId, viaWebhook, async (route) => {
          const limit = limits[route] ?? (await this.guildUploadLimit(target.guildId));
          limits[route] = limit;
          const files: DiscordFile[] = [];
          for (const image of images) {
            const fit = await fitImage(image.bytes, image.contentType, limit);
            if (fit.reencoded)
              this.logger.info(
                {
                  jobId: event.jobId,
                  from: image.bytes.length,
                  to: fit.bytes.length,
                  limit,
                  route,
                },
                'image re-encoded to fit the upload limit',
              );
            // A spoiler is a plain attachment named SPOILER_…: Discord blurs it until clicked.
            const name = `${image.spoiler === true ? 'SPOILER_' : ''}${imageFileName(image.seed, fit.ext)}`;
            files.push({ name, data: fit.bytes, contentType: fit.contentType });
          }
          last = { route, limit, size: Math.max(...files.map((f) => f.data.length)) };
          // One image shows in the embed; several show as the message's mosaic above it. An
          // embed's image is never blurred, so a spoiler never is one.
          const spoiler = images.some((image) => image.spoiler === true);
          const single = files.length === 1 && !spoiler ? files[0]!.name : undefined;
          const alt = imageAltText(event.prompt, ALT_TEXT_MAX.discord);
          return {
            payload: {
              content: [
                ...(spoiler
                  ? [
                      "This server's safety setting marked the image as a spoiler: click to show it.",
                    ]
                  : []),
                ...(event.withheld ? [withheldLine(event.withheld, 'server')] : []),
              ].join('\n'),
              embeds: [jobEmbed(event, single)],
              components: doneButtons(event, this.upscaleMaxSide),
              attachments: files.map((f, id) => ({ id, filename: f.name, description: alt })),
            },
            files,
          };
        });
        return;
      } catch (err) {
        // The limit we were told was wrong (or the channel's is lower): halve it and go again.
        if (!isTooLarge(err) || !last) throw err;
        limits[last.route] = Math.floor(Math.min(last.limit, last.size) / 2);
      }
    }
    throw new ImagineError('DELIVERY_FAILED', 'image still too large after re-encoding');
  }

  /**
   * Send a final message: through the interaction webhook while it works, else to the channel
   * with the bot token. A webhook that answered 404 is never called again; a channel post the
   * bot lacks permissions for falls back to the webhook while its token may still live.
   */
  private async sendFinal(
    target: DiscordTarget,
    jobId: string,
    viaWebhook: boolean,
    message: (route: Route) => Promise<{ payload: Payload; files?: DiscordFile[] }>,
  ): Promise<void> {
    if (viaWebhook && !this.webhookGone.has(jobId)) {
      const { payload, files } = await message('webhook');
      try {
        await this.edit(target, payload, files);
        return;
      } catch (err) {
        if (!this.noteWebhookGone(jobId, err)) throw err;
      }
    }
    if (!this.canPostToChannel(target)) {
      if (this.webhookGone.has(jobId)) {
        // Nothing left to answer through: stop here rather than try the same 404 again.
        this.logger.warn(
          { jobId },
          'interaction message gone and no bot token or channel to post to; result not delivered',
        );
        return;
      }
      throw new ImagineError(
        'DELIVERY_FAILED',
        'interaction token expired and no bot token or channel to post to',
      );
    }
    const { payload, files } = await message('channel');
    try {
      await this.toChannel(target, payload, files);
    } catch (err) {
      if (!isMissingPermission(err)) throw err;
      const code = (err as DiscordAPIError).code;
      this.logger.error(
        { jobId, channelId: target.channelId, guildId: target.guildId, discordCode: code },
        `the bot may not post in channel ${target.channelId} (${code === DISCORD_ERRORS.missingAccess ? 'Missing Access: View Channel' : 'Missing Permissions: Send Messages (Send Messages in Threads in a thread) or Attach Files'}); grant it there or re-invite with the URL npm run discord:register prints`,
      );
      // The token may still work (we leave a safety margin before its end): tell the user there.
      const stillAlive =
        !this.webhookGone.has(jobId) && this.now() < target.issuedAt + TOKEN_LIFETIME_MS;
      if (!viaWebhook && stillAlive) {
        const answer = await message('webhook');
        try {
          await this.edit(target, answer.payload, answer.files);
          return;
        } catch (e) {
          if (!this.noteWebhookGone(jobId, e)) throw e;
        }
      }
      throw new ImagineError(
        'DELIVERY_FAILED',
        `Discord refused the channel post: the bot lacks permissions in channel ${target.channelId}`,
        { cause: err },
      );
    }
  }

  /** The upload limit of a bot message in a guild, by its boost tier (10 MiB when unknown). */
  private async guildUploadLimit(guildId: string | undefined): Promise<number> {
    if (!guildId) return DEFAULT_ATTACHMENT_LIMIT;
    const known = this.guildLimits.get(guildId);
    if (known && this.now() - known.at < GUILD_LIMIT_TTL_MS) return known.limit;
    let limit = DEFAULT_ATTACHMENT_LIMIT;
    try {
      const guild = await this.api.getGuild(guildId);
      limit = GUILD_UPLOAD_LIMITS[guild.premium_tier] ?? DEFAULT_ATTACHMENT_LIMIT;
    } catch (err) {
      this.logger.warn(
        { guildId, err },
        'could not read the guild; assuming a 10 MiB upload limit',
      );
    }
    this.guildLimits.set(guildId, { limit, at: this.now() });
    return limit;
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
    if (!target.channelId) throw new ImagineError('DELIVERY_FAILED', 'no channel to post to');
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

/** Where a final message goes: the interaction webhook, or the channel with the bot token. */
type Route = 'webhook' | 'channel';
