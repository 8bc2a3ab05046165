/**
 * The App Home tab: how to use the bot and an "Imagine…" button that opens a prompt dialog;
 * the image is answered in the user's DM with the app.
 */
import type { App } from '@slack/bolt';
import { ASPECT_RATIOS } from '../../../contracts/job.ts';
import { USAGE } from '../request-text.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackEnv } from '../types.ts';

/** Ids of the Home button and the prompt dialog. */
export const HOME_IDS = {
  open: 'imagine_open_dialog',
  dialog: 'imagine_dialog',
  promptBlock: 'prompt',
  promptInput: 'prompt_input',
  aspectBlock: 'aspect',
  aspectInput: 'aspect_input',
} as const;

/** The Home tab view. */
export function homeView() {
  return {
    type: 'home' as const,
    blocks: [
      { type: 'header' as const, text: { type: 'plain_text' as const, text: 'imagine' } },
      {
        type: 'section' as const,
        text: {
          type: 'mrkdwn' as const,
          text: `Make images from a sentence. In any channel: ${USAGE}\nOr send me a prompt as a direct message.`,
        },
      },
      {
        type: 'actions' as const,
        elements: [
          {
            type: 'button' as const,
            action_id: HOME_IDS.open,
            style: 'primary' as const,
            text: { type: 'plain_text' as const, text: '✨ Imagine…' },
          },
        ],
      },
    ],
  };
}

function dialogView() {
  return {
    type: 'modal' as const,
    callback_id: HOME_IDS.dialog,
    title: { type: 'plain_text' as const, text: 'Imagine' },
    submit: { type: 'plain_text' as const, text: 'Imagine' },
    close: { type: 'plain_text' as const, text: 'Cancel' },
    blocks: [
      {
        type: 'input' as const,
        block_id: HOME_IDS.promptBlock,
        label: { type: 'plain_text' as const, text: 'Prompt' },
        element: {
          type: 'plain_text_input' as const,
          action_id: HOME_IDS.promptInput,
          multiline: true,
          max_length: 1000,
        },
      },
      {
        type: 'input' as const,
        block_id: HOME_IDS.aspectBlock,
        optional: true,
        label: { type: 'plain_text' as const, text: 'Aspect ratio' },
        element: {
          type: 'static_select' as const,
          action_id: HOME_IDS.aspectInput,
          options: ASPECT_RATIOS.map((a) => ({
            text: { type: 'plain_text' as const, text: a },
            value: a,
          })),
        },
      },
    ],
  };
}

/** Publish the Home tab, open the dialog from it, and start the dialog's job in the DM. */
export function registerAppHome(bolt: App, env: SlackEnv): void {
  bolt.event('app_home_opened', async ({ event }) => {
    if (event.tab !== 'home') return;
    await env.client.views.publish({ user_id: event.user, view: homeView() });
  });
  bolt.action(HOME_IDS.open, async ({ ack, body }) => {
    await ack();
    const triggerId = (body as { trigger_id?: string }).trigger_id;
    if (triggerId) await env.client.views.open({ trigger_id: triggerId, view: dialogView() });
  });
  bolt.view(HOME_IDS.dialog, async ({ ack, body, view }) => {
    const values = view.state.values;
    const prompt = values[HOME_IDS.promptBlock]?.[HOME_IDS.promptInput]?.value ?? '';
    const aspect = values[HOME_IDS.aspectBlock]?.[HOME_IDS.aspectInput]?.selected_option?.value;
    if (!prompt.trim()) {
      await ack({
        response_action: 'errors',
        errors: { [HOME_IDS.promptBlock]: 'Describe the image you want.' },
      });
      return;
    }
    await ack();
    // Posting to the user id lands in the user's DM with the app.
    await startSlackJob(
      env,
      { channelId: body.user.id, userId: body.user.id, inline: true, teamId: body.user.team_id },
      { prompt, ...(aspect ? { aspect } : {}) },
    );
  });
}
