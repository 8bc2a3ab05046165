/**
 * The port between the relay and the chat platforms: the relay hands each job's state changes
 * to the deliverer of the job's platform (Discord, Slack), which lives in bot/.
 */
import type { JobState } from './push.ts';
import type { ReplyTarget } from './seal.ts';

/** A snapshot of a job handed to a chat deliverer. */
export interface DeliveryEvent {
  jobId: string;
  state: JobState;
  position?: number | undefined;
  prompt?: string | undefined;
  seed?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  createdAt: number;
  generationMs?: number | undefined;
  generator?: string | undefined;
  error?: { code: string; message: string } | undefined;
  image?: { bytes: Buffer; contentType: string } | undefined;
}

/** Delivers job events to one chat platform. */
export interface ChatDeliverer {
  readonly platform: ReplyTarget['platform'];
  deliver(target: ReplyTarget, event: DeliveryEvent): Promise<void>;
}
