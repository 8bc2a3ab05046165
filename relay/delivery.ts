/**
 * Chat delivery: every job with a sealed reply target has its state changes delivered to its
 * platform (Discord, Slack) in order, one at a time per job. Intermediate status updates that
 * are overtaken while a delivery is in flight are skipped; final states never are.
 */
import type { Logger } from 'pino';
import type { ChatDeliverer, DeliveryEvent, HeldImage } from '../contracts/delivery.ts';
import { imageSeed } from '../contracts/limits.ts';
import type { ReplyTarget } from '../contracts/seal.ts';
import { openReplyTarget } from '../contracts/seal.ts';
import { coalesce } from './coalesce.ts';
import {
  isTerminal,
  type JobRecord,
  type JobTracker,
  type JobUpdate,
  type ProgressUpdate,
  progressFraction,
} from './job-tracker.ts';

/**
 * Least time between two rounds of queue positions sent to chat: when the queue moves, the jobs
 * whose place changed are told at most this often (Slack allows ~50 `chat.update` a minute per
 * workspace, Discord a few edits a second per webhook route).
 */
export const CHAT_POSITION_INTERVAL_MS = 5000;
/** Only this many jobs at the head of the queue are told their position as the queue moves. */
export const CHAT_POSITION_JOBS = 10;
/**
 * Least time between two progress events of one job handed to chat: one Discord edit a second
 * per job; the Slack deliverer's own budget drops what its tier cannot take.
 */
export const CHAT_PROGRESS_INTERVAL_MS = 1000;

export type { ChatDeliverer, DeliveryEvent };

/** Options of {@link ChatDelivery}. */
export interface ChatDeliveryOptions {
  /** Least time between two rounds of queue positions (default {@link CHAT_POSITION_INTERVAL_MS}). */
  positionIntervalMs?: number;
}

interface Lane {
  running: boolean;
  pending: DeliveryEvent[];
  sealed: string;
}

/** Routes tracker updates to the deliverer of each job's platform. */
export class ChatDelivery {
  private readonly deliverers = new Map<string, ChatDeliverer>();
  private readonly lanes = new Map<string, Lane>();
  private readonly idle = new Set<() => void>();
  private positions: ReturnType<typeof coalesce> | undefined;
  /** Per job: when progress was last handed to chat, and the trailing send waiting. */
  private readonly progressSent = new Map<
    string,
    { at: number; timer?: NodeJS.Timeout | undefined }
  >();

  /**
   * Per queued job: the position it was last told. A round of positions tells only the jobs
   * whose place changed: an unchanged one would be the same edit again, spent from the
   * platform's rate limits (Discord edits the message whatever its text).
   */
  private readonly toldPosition = new Map<string, number>();

  private readonly secret: string;
  private readonly logger: Logger;
  private readonly defaultGenerator: string;
  private readonly positionIntervalMs: number;

  constructor(
    secret: string,
    logger: Logger,
    defaultGenerator: string,
    opts: ChatDeliveryOptions = {},
  ) {
    this.secret = secret;
    this.logger = logger;
    this.defaultGenerator = defaultGenerator;
    this.positionIntervalMs = opts.positionIntervalMs ?? CHAT_POSITION_INTERVAL_MS;
  }

  /** Register a platform's deliverer. */
  register(deliverer: ChatDeliverer): void {
    this.deliverers.set(deliverer.platform, deliverer);
  }

  /** Follow a tracker's updates. */
  attach(tracker: JobTracker): void {
    tracker.on('update', (u: JobUpdate) => {
      if (u.record.state !== 'generating') this.forgetProgress(u.record.jobId);
      if (u.record.state !== 'queued') this.toldPosition.delete(u.record.jobId);
      else if (!u.remote && u.position !== undefined && u.record.replyTarget)
        this.toldPosition.set(u.record.jobId, u.position);
      // Another relay instance received that push and delivers it; delivering here too would
      // post twice.
      if (!u.remote) this.onUpdate(u.record, u.position);
    });
    // Progress goes to chat at most once a second per job, the latest report then.
    tracker.on('progress', (u: ProgressUpdate) => {
      if (u.remote || !u.record.replyTarget || this.deliverers.size === 0) return;
      const jobId = u.record.jobId;
      const sent = this.progressSent.get(jobId) ?? { at: 0 };
      this.progressSent.set(jobId, sent);
      if (sent.timer) return;
      const wait = Math.max(0, sent.at + CHAT_PROGRESS_INTERVAL_MS - Date.now());
      sent.timer = setTimeout(() => {
        sent.timer = undefined;
        sent.at = Date.now();
        const record = tracker.get(jobId);
        if (record?.state === 'generating') this.onUpdate(record, undefined);
      }, wait);
      sent.timer.unref();
    });
    tracker.on('forgotten', ({ jobId }: { jobId: string }) => this.toldPosition.delete(jobId));
    // Chat edits are rate limited by the platforms (Slack: ~50 chat.update a minute per
    // workspace): queue positions go out at most every interval, only to the first jobs in
    // line and only where the position changed, so position edits stay under 2 a second and
    // never delay a finished image.
    this.positions = coalesce(() => {
      for (const [jobId, position] of tracker.queuedPositions()) {
        if (position >= CHAT_POSITION_JOBS) break;
        const record = tracker.get(jobId);
        if (!record?.replyTarget) continue;
        if (this.toldPosition.get(jobId) === position) continue;
        this.toldPosition.set(jobId, position);
        this.onUpdate(record, position);
      }
    }, this.positionIntervalMs);
    tracker.on('positions', this.positions);
  }

  /** Deliver one event straight to a target's platform (a moderator's Approve / Reject). */
  async deliverTo(target: ReplyTarget, event: DeliveryEvent): Promise<void> {
    const deliverer = this.deliverers.get(target.platform);
    if (!deliverer) throw new Error(`no ${target.platform} deliverer on this relay`);
    await deliverer.deliver(target, event);
  }

  /** Whether this relay can post held images for a platform's moderators. */
  canReview(platform: ReplyTarget['platform']): boolean {
    return this.deliverers.get(platform)?.postForReview !== undefined;
  }

  /** Post a held image to its scope's moderators' channel; throws when nobody can. */
  async postForReview(held: HeldImage): Promise<void> {
    const deliverer = this.deliverers.get(held.target.platform);
    if (!deliverer?.postForReview)
      throw new Error(`${held.target.platform} cannot hold images for review here`);
    await deliverer.postForReview(held);
  }

  /** Open a sealed reply target (undefined when it cannot be opened). */
  open(sealed: string): ReplyTarget | undefined {
    try {
      return openReplyTarget(this.secret, sealed);
    } catch {
      return undefined;
    }
  }

  private forgetProgress(jobId: string): void {
    const sent = this.progressSent.get(jobId);
    if (sent?.timer) clearTimeout(sent.timer);
    this.progressSent.delete(jobId);
  }

  /** Resolves when no delivery is pending (tests, shutdown). */
  async drain(): Promise<void> {
    this.positions?.cancel();
    for (const jobId of [...this.progressSent.keys()]) this.forgetProgress(jobId);
    if (this.lanes.size === 0) return;
    await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private onUpdate(record: JobRecord, position: number | undefined): void {
    if (!record.replyTarget || this.deliverers.size === 0) return;
    const event: DeliveryEvent = {
      jobId: record.jobId,
      state: record.state,
      position,
      ...(record.state === 'generating' && record.progress
        ? { progress: progressFraction(record.progress) }
        : {}),
      prompt: record.prompt,
      seed: record.seed,
      width: record.width,
      height: record.height,
      createdAt: record.createdAt,
      generationMs: record.generationMs,
      generator: record.generator ?? this.defaultGenerator,
      error: record.error,
      ...(record.withheld ? { withheld: record.withheld } : {}),
      task: record.task,
      count: record.count,
      steps: record.steps,
      strength: record.strength,
      model: record.model,
      source: record.source,
      images: record.images?.map((image, i) => ({
        bytes: image.bytes,
        contentType: image.contentType,
        seed: image.info.seed ?? imageSeed(record.seed ?? 0, i),
        width: image.info.width ?? record.width ?? 0,
        height: image.info.height ?? record.height ?? 0,
        ...(record.spoilers?.[i] ? { spoiler: true } : {}),
      })),
    };
    let lane = this.lanes.get(record.jobId);
    if (!lane) {
      lane = { running: false, pending: [], sealed: record.replyTarget };
      this.lanes.set(record.jobId, lane);
    }
    // A newer non-final status replaces an older one still waiting.
    const last = lane.pending.at(-1);
    if (last && !isTerminal(last.state)) lane.pending.pop();
    lane.pending.push(event);
    if (!lane.running) void this.run(record.jobId, lane);
  }

  private async run(jobId: string, lane: Lane): Promise<void> {
    lane.running = true;
    let target: ReplyTarget;
    try {
      target = openReplyTarget(this.secret, lane.sealed);
    } catch (err) {
      this.logger.warn({ jobId, err }, 'reply target cannot be opened; nothing delivered');
      lane.pending = [];
      this.finish(jobId);
      return;
    }
    const deliverer = this.deliverers.get(target.platform);
    while (lane.pending.length > 0) {
      const event = lane.pending.shift()!;
      if (!deliverer) continue;
      try {
        await deliverer.deliver(target, event);
      } catch (err) {
        // A position that did not get through is told again at the next round.
        if (event.state === 'queued' && this.toldPosition.get(jobId) === event.position)
          this.toldPosition.delete(jobId);
        this.logger.error({ jobId, err, state: event.state }, 'chat delivery failed');
      }
    }
    this.finish(jobId);
  }

  private finish(jobId: string): void {
    this.lanes.delete(jobId);
    if (this.lanes.size === 0) {
      for (const resolve of this.idle) resolve();
      this.idle.clear();
    }
  }
}
