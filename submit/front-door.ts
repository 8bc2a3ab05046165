/**
 * What a chat adapter's receivers need of the server they are mounted on: the submit path, the
 * admission policy and the generator's name. The relay decorates its Fastify instance with it
 * as `frontDoor`, so adapters in bot/ never reach into the relay's own state.
 */
import type {
  CancelRequester,
  CancelResult,
  ResultImages,
  ReviewDesk,
} from '../contracts/delivery.ts';
import type { AdmissionPolicy, Submitter } from './submit.ts';

/** The submit path and moderation, as a front end sees them. */
export interface FrontDoor {
  submit: Submitter;
  admission: AdmissionPolicy | undefined;
  /** The generator the workers run ("demo" is labelled as such to users). */
  generator: { name: string; demo: boolean };
  /** Images output safety holds for moderators (Approve / Reject buttons reach them here). */
  reviews: ReviewDesk;
  /** Finished images in the relay's memory (Slack's "Show image" under a blurred spoiler). */
  results: ResultImages;
  /**
   * Cancel a job from a chat Cancel button: allowed for the job's requester (same platform and
   * user id as its origin) and for moderators. A queued job never reaches the generator and gets
   * its quota back; a running one is stopped; a finished one is left alone.
   */
  cancel(jobId: string, requester: CancelRequester): Promise<CancelResult>;
}

declare module 'fastify' {
  interface FastifyInstance {
    frontDoor: FrontDoor;
  }
}
