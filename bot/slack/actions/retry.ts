/** Retry: the failed job again, same prompt, seed and size, in the same status message. */
import { ACTION_IDS, requestFromSpec } from '../blocks.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackAction } from '../types.ts';
import { clickOrigin, placeForClick, specOf } from './place.ts';

/** The Retry button on a failed job's message. */
export const retryAction: SlackAction = {
  actionId: ACTION_IDS.retry,
  async handle(args) {
    await args.ack();
    const spec = await specOf(args);
    if (!spec) return;
    const { messageTs, threadTs } = clickOrigin(args.body);
    const place = placeForClick(args.body);
    await startSlackJob(
      args.env,
      { ...place, threadTs, ...(messageTs ? { statusTs: messageTs } : {}) },
      requestFromSpec(spec, false),
    );
  },
};
