/**
 * Images held for moderator review, in this relay's memory only (never on disk): the flagged
 * image, its sealed-then-opened reply target and what the audit log needs. A moderator's
 * Approve delivers it to the original reply target; Reject tells the user; a click after the
 * image left memory (restart, TTL, byte cap) is told it expired. Every outcome is counted and
 * written to the scope's audit log.
 */
import type { Logger } from 'pino';
import type {
  DeliveryEvent,
  HeldImage,
  ReviewActor,
  ReviewDesk,
  ReviewOutcome,
} from '../contracts/delivery.ts';
import { asModeration } from '../moderation/index.ts';
import { scopeKeyOf } from '../moderation/settings.ts';
import type { AdmissionPolicy } from '../submit/submit.ts';
import type { ChatDelivery } from './delivery.ts';
import type { RelayMetrics } from './metrics.ts';

/** Options of {@link MemoryReviewDesk}. */
export interface ReviewDeskOptions {
  ttlMs: number;
  maxBytes: number;
  delivery: ChatDelivery;
  metrics: RelayMetrics;
  admission: AdmissionPolicy | undefined;
  logger: Logger;
  now?: () => number;
}

const keyOf = (jobId: string, index: number) => `${jobId}:${index}`;

/** The review desk of one relay instance. */
export class MemoryReviewDesk implements ReviewDesk {
  readonly #held = new Map<string, HeldImage>();
  /** Jobs whose user already heard of one of their held images: later news goes beside it. */
  readonly #answered = new Set<string>();
  #bytes = 0;
  readonly #opts: ReviewDeskOptions;
  readonly #now: () => number;

  constructor(opts: ReviewDeskOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** Bytes of images held now. */
  get heldBytes(): number {
    this.#sweep();
    return this.#bytes;
  }

  /**
   * Hold a flagged image and post it to the scope's moderators' channel. When it cannot be
   * posted there, the user is told and nothing is held (a hold nobody can see would never end).
   */
  async hold(held: HeldImage): Promise<void> {
    this.#sweep();
    const size = held.image.bytes.length;
    if (!this.#opts.delivery.canReview(held.target.platform)) {
      await this.#tellUser(
        held,
        'SAFETY_BLOCKED',
        `this ${held.platform === 'slack' ? 'workspace' : 'server'}'s safety setting holds flagged images for a moderator, but review is not available on ${held.target.platform} here; nothing was delivered`,
      );
      return;
    }
    if (size > this.#opts.maxBytes) {
      await this.#tellUser(held, 'DELIVERY_FAILED', 'the image is too large to hold for review');
      return;
    }
    while (this.#bytes + size > this.#opts.maxBytes) this.#evictOldest();
    this.#held.set(keyOf(held.jobId, held.index), held);
    this.#bytes += size;
    try {
      await this.#opts.delivery.postForReview(held);
    } catch (err) {
      this.#opts.logger.error({ err, jobId: held.jobId }, 'could not post an image for review');
      this.#drop(keyOf(held.jobId, held.index));
      await this.#tellUser(
        held,
        'SAFETY_BLOCKED',
        "the image was held for a moderator, but the moderators' channel could not be reached; nothing was delivered",
      );
    }
  }

  peek(jobId: string, index: number): HeldImage | undefined {
    this.#sweep();
    return this.#held.get(keyOf(jobId, index));
  }

  async decide(
    jobId: string,
    index: number,
    verdict: 'approve' | 'reject',
    actor: ReviewActor,
  ): Promise<ReviewOutcome> {
    this.#sweep();
    const key = keyOf(jobId, index);
    const held = this.#held.get(key);
    if (!held) {
      this.#record(undefined, jobId, index, 'expired', actor);
      return 'expired';
    }
    // Taken before anything is awaited: a second click (or a second moderator) finds it gone.
    this.#drop(key);
    if (verdict === 'approve') {
      const waiting = this.#waiting(jobId);
      await this.#opts.delivery.deliverTo(held.target, {
        ...this.#event(held),
        state: 'done',
        images: [held.image],
        ...(waiting + (held.blocked ?? 0) > 0
          ? { withheld: { blocked: held.blocked ?? 0, held: waiting, of: held.of ?? 1 } }
          : {}),
      });
      this.#record(held, jobId, index, 'approved', actor);
      return 'approved';
    }
    await this.#tellUser(
      held,
      'SAFETY_BLOCKED',
      held.of !== undefined && held.of > 1
        ? `a moderator rejected image ${held.index + 1} of ${held.of}; it was not delivered`
        : 'a moderator rejected the image; nothing was delivered',
    );
    this.#record(held, jobId, index, 'rejected', actor);
    return 'rejected';
  }

  /**
   * The event's common part. The first word the user gets about a job whose images were all
   * held replaces its "awaits review" answer; any later one (or any, when some of the job's
   * images were delivered) goes beside the answer instead of over it.
   */
  #event(held: HeldImage): Omit<DeliveryEvent, 'state'> {
    const beside = (held.delivered ?? 0) > 0 || this.#answered.has(held.jobId);
    if (this.#waiting(held.jobId) > 0) this.#answered.add(held.jobId);
    else this.#answered.delete(held.jobId);
    return {
      ...(beside ? { beside: { index: held.index, of: held.of ?? 1 } } : {}),
      jobId: held.jobId,
      prompt: held.prompt,
      seed: held.image.seed,
      width: held.image.width,
      height: held.image.height,
      createdAt: held.createdAt,
      generator: held.generator,
    };
  }

  async #tellUser(held: HeldImage, code: string, message: string): Promise<void> {
    await this.#opts.delivery
      .deliverTo(held.target, { ...this.#event(held), state: 'failed', error: { code, message } })
      .catch((err) =>
        this.#opts.logger.warn({ err, jobId: held.jobId }, 'could not tell the user'),
      );
  }

  /** How many of a job's images are still held here. */
  #waiting(jobId: string): number {
    let n = 0;
    for (const held of this.#held.values()) if (held.jobId === jobId) n += 1;
    return n;
  }

  #record(
    held: HeldImage | undefined,
    jobId: string,
    index: number,
    outcome: ReviewOutcome,
    actor: ReviewActor,
  ): void {
    const platform = held?.platform ?? actor.platform;
    this.#opts.metrics.safety.inc({ action: outcome, platform });
    const moderation = asModeration(this.#opts.admission);
    const scopeId = held?.scopeId ?? actor.scopeId;
    if (!moderation || scopeId === undefined) return;
    void moderation.note(scopeKeyOf({ platform, scopeId }), {
      at: this.#now(),
      actorId: actor.id,
      ...(actor.name === undefined ? {} : { actorName: actor.name }),
      action: `safety review ${outcome}: image ${index + 1} of job ${jobId}${held?.userId ? ` for ${held.userId}` : ''}`,
    });
  }

  #sweep(): void {
    const cutoff = this.#now() - this.#opts.ttlMs;
    for (const [key, held] of this.#held) {
      if (held.heldAt > cutoff) break;
      this.#drop(key);
    }
  }

  #evictOldest(): void {
    const first = this.#held.keys().next();
    if (!first.done) this.#drop(first.value);
  }

  #drop(key: string): void {
    const held = this.#held.get(key);
    if (!held) return;
    this.#held.delete(key);
    this.#bytes -= held.image.bytes.length;
  }
}
