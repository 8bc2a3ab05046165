/**
 * Cancelling a job (`DELETE /jobs/:jobId`, a chat Cancel button). The decision is recorded where
 * every relay sees it: the job ledger (Redis when configured, shared by all relays), atomically,
 * so a cancel racing a worker's start on another relay has one winner; then the tracker, whose
 * update tells the WebSockets, chat and the other relays (fan-out) exactly once. A worker learns
 * it from the relay's answer to its next push (`409 JOB_CANCELLED`).
 */
import type { CancelRequester, CancelResult } from '../contracts/delivery.ts';
import { ImagineError } from '../contracts/errors.ts';
import { JOB_ID_PATTERN } from '../contracts/job.ts';
import { isTerminal, type TerminalState } from '../contracts/push.ts';
import { openReplyTarget } from '../contracts/seal.ts';
import type { RelayState } from './app.ts';
import { ledgerEntryOf } from './job-ledger.ts';
import { lookupJob } from './job-lookup.ts';
import type { JobRecord } from './job-tracker.ts';

type CancelDeps = Pick<RelayState, 'tracker' | 'fanout' | 'ledger' | 'config' | 'admission'>;

/** Whether a chat user may cancel this job: its requester, or a moderator. */
function mayCancel(record: JobRecord, requester: CancelRequester, secret: string): boolean {
  if (requester.isModerator) return true;
  if (record.platform !== undefined && record.platform !== requester.platform) return false;
  if (record.userId !== undefined) return record.userId === requester.userId;
  // Learned from a push (no origin here): the sealed reply target names the requester.
  if (record.replyTarget) {
    try {
      const target = openReplyTarget(secret, record.replyTarget);
      return target.platform === requester.platform && target.userId === requester.userId;
    } catch {
      return false;
    }
  }
  return false;
}

/**
 * Cancel a job. `requester` absent: the web, where the job id is the capability. Throws a coded
 * 503 when the ledger cannot be reached (nothing changed then).
 */
export async function cancelJob(
  relay: CancelDeps,
  jobId: string,
  requester?: CancelRequester,
): Promise<CancelResult> {
  if (!JOB_ID_PATTERN.test(jobId)) return { outcome: 'unknown', jobId };
  const record = await lookupJob(relay, jobId);
  if (!record) return { outcome: 'unknown', jobId };
  if (requester && !mayCancel(record, requester, relay.config.RELAY_SECRET))
    return { outcome: 'not-allowed', jobId };
  if (isTerminal(record.state))
    return { outcome: 'already-finished', jobId, state: record.state as TerminalState };
  let beforeStart = record.state === 'queued';
  if (relay.ledger) {
    let decided: Awaited<ReturnType<NonNullable<CancelDeps['ledger']>['transition']>>;
    try {
      decided = await relay.ledger.transition(
        ledgerEntryOf({ ...record, state: 'cancelled' } as JobRecord & Record<string, unknown>),
      );
    } catch (err) {
      throw new ImagineError('QUEUE_UNAVAILABLE', 'the job store cannot be reached; try again', {
        cause: err,
      });
    }
    const previous = decided.previous;
    if (!decided.applied && previous && isTerminal(previous.state)) {
      // It ended on another relay a moment ago (its event is on its way here).
      return { outcome: 'already-finished', jobId, state: previous.state as TerminalState };
    }
    if (previous?.state === 'generating') beforeStart = false;
  }
  const { duplicate, record: after } = relay.tracker.apply(jobId, {
    state: 'cancelled',
    cancelledBeforeStart: beforeStart,
  });
  if (duplicate) return { outcome: 'already-finished', jobId, state: after.state as TerminalState };
  return { outcome: 'cancelled', jobId };
}
