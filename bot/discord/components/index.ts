/**
 * Every component handler, keyed by the name at the head of its `custom_id`. Add a handler by
 * importing its module here.
 */
import type { ComponentHandler } from '../interactions.ts';
import {
  rerollButton,
  retryButton,
  upscaleButton,
  variationsButton,
  varyImageButton,
  varySubtleMenu,
} from './buttons.ts';
import { cancelButton } from './cancel.ts';
import { reviewButton } from './review.ts';

/** The component handlers imagine dispatches to. */
export const componentHandlers: ComponentHandler[] = [
  rerollButton,
  retryButton,
  variationsButton,
  upscaleButton,
  varyImageButton,
  varySubtleMenu,
  reviewButton,
  cancelButton,
];
