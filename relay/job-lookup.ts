/** Finding a job this relay instance may not hold in memory: the ledger, then fan-out. */
import type { RelayState } from './app.ts';
import type { JobRecord } from './job-tracker.ts';

/**
 * How long a relay with fan-out waits for the event announcing a job it does not know yet: a
 * client may reach this instance just before the event from the instance that queued the job.
 */
export const FANOUT_GRACE_MS = 2000;

/**
 * A job's record: from memory, else from the ledger (a job queued before a restart, or through
 * another relay), else, with fan-out, after a brief wait for the event announcing it.
 */
export async function lookupJob(
  relay: Pick<RelayState, 'tracker' | 'fanout' | 'ledger'>,
  jobId: string,
): Promise<JobRecord | undefined> {
  const known = relay.tracker.get(jobId) ?? (await recallJob(relay, jobId));
  if (known || !relay.fanout) return known;
  return relay.tracker.whenKnown(jobId, FANOUT_GRACE_MS);
}

/** Learn a job this instance has no record of from the ledger, if it remembers one. */
export async function recallJob(
  relay: Pick<RelayState, 'tracker' | 'ledger'>,
  jobId: string,
): Promise<JobRecord | undefined> {
  const entry = await relay.ledger?.recall(jobId);
  return entry ? relay.tracker.recall(entry) : undefined;
}
