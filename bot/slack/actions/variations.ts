/** Variations: four new seeds of the same prompt and size, each its own status message. */
import { ACTION_IDS, requestFromSpec } from '../blocks.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackAction } from '../types.ts';
import { placeForClick, specOf } from './place.ts';

/** How many images one Variations click asks for. */
export const VARIATION_COUNT = 4;

/** The Variations button. */
export const variationsAction: SlackAction = {
  actionId: ACTION_IDS.variations,
  async handle(args) {
    await args.ack();
    const spec = await specOf(args);
    if (!spec) return;
    const place = placeForClick(args.body);
    for (let i = 0; i < VARIATION_COUNT; i++) {
      // Stop at the first refusal (limit reached, queue full): the user was told why once.
      const request = { ...requestFromSpec(spec, true), count: 1 };
      if (!(await startSlackJob(args.env, place, request))) return;
    }
  },
};
