/**
 * Every button the Slack adapter answers, dispatched by `action_id`. To add one, write a
 * module exporting a {@link SlackAction} and add it to this list.
 */
import type { SlackAction } from '../types.ts';
import { cancelAction } from './cancel.ts';
import { creativeAction } from './creative.ts';
import { rerollAction } from './reroll.ts';
import { retryAction } from './retry.ts';
import { revealAction } from './reveal.ts';
import { reviewApproveAction, reviewRejectAction } from './review.ts';
import { variationsAction } from './variations.ts';

/** The default button modules. */
export const slackActions: readonly SlackAction[] = [
  creativeAction,
  // Cards from before the creative loop (v1 values) keep working.
  rerollAction,
  variationsAction,
  retryAction,
  reviewApproveAction,
  reviewRejectAction,
  revealAction,
  cancelAction,
];
