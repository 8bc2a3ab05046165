/**
 * The queue port. Bot adapters send jobs; workers consume them. Adapters: SQS (AWS or the
 * embedded fauxqs emulator) and BullMQ (Redis, for self-hosters).
 */
import type { Job } from '../contracts/job.ts';

/** Puts jobs on the queue. */
export interface JobQueue {
  /** Send one job; resolves once the queue has accepted it. */
  send(job: Job): Promise<void>;
  /** Approximate number of jobs waiting (not yet received), if the backend can tell. */
  depth(): Promise<number | undefined>;
}

/** The delivery context of one job: abort on shutdown, and which attempt this is (1-based). */
export interface DeliveryContext {
  signal: AbortSignal;
  attempt: number;
}

/** What the worker does with one job. Throwing asks for redelivery later. */
export type JobHandler = (job: Job, ctx: DeliveryContext) => Promise<void>;

/** Takes jobs off the queue and hands them to a handler. */
export interface JobConsumer {
  start(handler: JobHandler): void;
  /** Stop polling and wait for jobs in flight. */
  stop(): Promise<void>;
}
