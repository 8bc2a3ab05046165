/** Re-roll: the same prompt and size with a new seed, under the clicked card. */
import { ACTION_IDS, requestFromSpec } from '../blocks.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackAction } from '../types.ts';
import { placeForClick, specOf } from './place.ts';

/** The Re-roll button. */
export const rerollAction: SlackAction = {
  actionId: ACTION_IDS.reroll,
  async handle(args) {
    await args.ack();
    const spec = await specOf(args);
    if (!spec) return;
    await startSlackJob(args.env, placeForClick(args.body), requestFromSpec(spec, true));
  },
};
