/**
 * The message shortcut "Imagine from this image": on a message with an image file, it opens a
 * small dialog — the prompt (prefilled with the message's text, which is often a caption and
 * rarely the prompt someone wants) and how far to stray (subtle / strong) — and submitting it
 * starts an image-to-image job from that file, answered in the message's thread.
 *
 * Why a dialog and not the message text alone: a message's text is what someone said about
 * the picture ("look at this!"), not a prompt, and the strength is a choice the user should
 * make; the dialog costs one click and prefills the text for when it is a prompt.
 *
 * The file is referenced, never copied: the job carries its Slack file id and the worker
 * fetches it (`files.info` → `url_private`, bot token) when the job runs. Everything the
 * submission needs rides in the dialog's `private_metadata`, so it works on any relay.
 */
import type { App } from '@slack/bolt';
import { z } from 'zod';
import { tellUser } from '../replies.ts';
import { unescapeSlackText } from '../request-text.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackEnv } from '../types.ts';

/** Ids of the shortcut and its dialog (the shortcut's callback_id is in manifest.yaml). */
export const FROM_IMAGE_IDS = {
  shortcut: 'imagine_from_image',
  dialog: 'imagine_from_image_dialog',
  promptBlock: 'prompt',
  promptInput: 'prompt_input',
  strengthBlock: 'strength',
  strengthInput: 'strength_input',
} as const;

/** Image types the worker accepts as input. */
const INPUT_MIMETYPES = new Set(['image/png', 'image/jpeg', 'image/webp']);

/** A file as a message_action payload lists it. */
interface MessageFile {
  id?: string;
  mimetype?: string;
  original_w?: number;
  original_h?: number;
  name?: string;
}

/** What the dialog remembers of where it came from. */
const MetadataSchema = z
  .object({
    c: z.string().min(1).max(255),
    t: z.string().min(1).max(64),
    f: z.string().regex(/^F[A-Z0-9]{2,40}$/),
    w: z.number().int().min(1).max(8192).optional(),
    h: z.number().int().min(1).max(8192).optional(),
    tm: z.string().max(255).optional(),
  })
  .strict();

/** The first file of a message the worker can use as input. */
export function inputFileOf(files: unknown): MessageFile | undefined {
  if (!Array.isArray(files)) return undefined;
  return (files as MessageFile[]).find(
    (f) => typeof f?.id === 'string' && INPUT_MIMETYPES.has(String(f.mimetype)),
  );
}

function dialogView(prompt: string, metadata: string) {
  return {
    type: 'modal' as const,
    callback_id: FROM_IMAGE_IDS.dialog,
    private_metadata: metadata,
    title: { type: 'plain_text' as const, text: 'Imagine from image' },
    submit: { type: 'plain_text' as const, text: 'Imagine' },
    close: { type: 'plain_text' as const, text: 'Cancel' },
    blocks: [
      {
        type: 'input' as const,
        block_id: FROM_IMAGE_IDS.promptBlock,
        label: { type: 'plain_text' as const, text: 'Prompt' },
        element: {
          type: 'plain_text_input' as const,
          action_id: FROM_IMAGE_IDS.promptInput,
          multiline: true,
          max_length: 1000,
          ...(prompt ? { initial_value: prompt.slice(0, 1000) } : {}),
        },
      },
      {
        type: 'input' as const,
        block_id: FROM_IMAGE_IDS.strengthBlock,
        label: { type: 'plain_text' as const, text: 'How far from the image' },
        element: {
          type: 'static_select' as const,
          action_id: FROM_IMAGE_IDS.strengthInput,
          initial_option: {
            text: { type: 'plain_text' as const, text: 'Strong: a new take' },
            value: 'strong',
          },
          options: [
            { text: { type: 'plain_text' as const, text: 'Subtle: close to it' }, value: 'subtle' },
            { text: { type: 'plain_text' as const, text: 'Strong: a new take' }, value: 'strong' },
          ],
        },
      },
    ],
  };
}

/** Register the shortcut and its dialog. */
export function registerImagineFromImage(bolt: App, env: SlackEnv): void {
  bolt.shortcut(
    { type: 'message_action', callback_id: FROM_IMAGE_IDS.shortcut },
    async ({ ack, shortcut }) => {
      await ack();
      const s = shortcut as unknown as {
        trigger_id: string;
        user: { id: string };
        channel: { id: string };
        team?: { id?: string } | null;
        message: { ts: string; thread_ts?: string; text?: string; files?: unknown };
        response_url?: string;
      };
      const file = inputFileOf(s.message.files);
      if (!file?.id) {
        await tellUser(
          env.client,
          env.logger,
          { channelId: s.channel.id, userId: s.user.id, responseUrl: s.response_url },
          'That message has no PNG, JPEG or WebP image to start from. Use the shortcut on a message with an image file.',
          { responseUrls: env.responseUrls },
        );
        return;
      }
      const metadata = JSON.stringify({
        c: s.channel.id,
        t: s.message.thread_ts ?? s.message.ts,
        f: file.id,
        ...(file.original_w ? { w: file.original_w } : {}),
        ...(file.original_h ? { h: file.original_h } : {}),
        ...(s.team?.id ? { tm: s.team.id } : {}),
      });
      // The trigger lives 3 s: open the dialog before anything else.
      await env.client.views.open({
        trigger_id: s.trigger_id,
        view: dialogView(unescapeSlackText(s.message.text ?? '').trim(), metadata),
      });
    },
  );
  bolt.view(FROM_IMAGE_IDS.dialog, async ({ ack, body, view }) => {
    let meta: z.infer<typeof MetadataSchema>;
    try {
      meta = MetadataSchema.parse(JSON.parse(view.private_metadata));
    } catch {
      await ack({
        response_action: 'errors',
        errors: {
          [FROM_IMAGE_IDS.promptBlock]: 'This dialog is out of date: use the shortcut again.',
        },
      });
      return;
    }
    const values = view.state.values;
    const prompt = values[FROM_IMAGE_IDS.promptBlock]?.[FROM_IMAGE_IDS.promptInput]?.value ?? '';
    const strength =
      values[FROM_IMAGE_IDS.strengthBlock]?.[FROM_IMAGE_IDS.strengthInput]?.selected_option
        ?.value === 'subtle'
        ? 'subtle'
        : 'strong';
    if (!prompt.trim()) {
      await ack({
        response_action: 'errors',
        errors: { [FROM_IMAGE_IDS.promptBlock]: 'Describe what to make of the image.' },
      });
      return;
    }
    await ack();
    const isDm = meta.c.startsWith('D');
    await startSlackJob(
      env,
      {
        channelId: meta.c,
        userId: body.user.id,
        userName: body.user.name,
        teamId: meta.tm ?? body.user.team_id,
        ...(isDm ? { inline: true } : { threadTs: meta.t }),
      },
      {
        prompt,
        task: 'vary',
        strength,
        input: {
          image: { kind: 'slack-file', fileId: meta.f },
          ...(meta.w && meta.h ? { width: meta.w, height: meta.h } : {}),
        },
      },
    );
  });
}
