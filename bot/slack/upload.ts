/**
 * Slack's external upload, done here rather than with `filesUploadV2`: that helper sends the
 * alt text as `alt_text`, which `files.getUploadURLExternal` ignores (the argument is
 * `alt_txt`), so screen readers got nothing. Steps: `files.getUploadURLExternal` per file,
 * POST the bytes to each `upload_url`, then one `files.completeUploadExternal` that shares all
 * of them together (one message with every file) in the channel or thread.
 */
import type { WebClient } from '@slack/web-api';
import sharp from 'sharp';
import type { SlackRateBudget } from './rate-budget.ts';

/** One file to upload. */
export interface SlackUploadFile {
  bytes: Buffer;
  filename: string;
  title?: string | undefined;
  /** Screen-reader description (Slack's `alt_txt`). */
  altText?: string | undefined;
}

/** Where the files are shared. */
export interface SlackShare {
  channelId: string;
  threadTs?: string | undefined;
  /** mrkdwn, escaped by the caller. */
  initialComment?: string | undefined;
}

/** An uploaded file as Slack lists it. */
export interface UploadedFile {
  id: string;
  title?: string | undefined;
}

/** A failure of the upload URL itself (not a Web API error): coded like one. */
class UploadUrlError extends Error {
  readonly data: { error: string };
  constructor(status: number) {
    super(`the upload URL answered ${status}`);
    this.data = { error: `upload_url_${status}` };
  }
}

/** Upload `files` and share them in one message; resolves with their ids, in order. */
export async function uploadFiles(
  client: WebClient,
  budget: SlackRateBudget,
  share: SlackShare,
  files: readonly SlackUploadFile[],
): Promise<UploadedFile[]> {
  const ids: string[] = [];
  for (const file of files) {
    await budget.take('files.getUploadURLExternal');
    const res = (await client.apiCall('files.getUploadURLExternal', {
      filename: file.filename,
      length: file.bytes.length,
      ...(file.altText ? { alt_txt: file.altText } : {}),
    })) as { upload_url?: string; file_id?: string };
    if (!res.upload_url || !res.file_id) throw new UploadUrlError(0);
    const put = await fetch(res.upload_url, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: new Uint8Array(file.bytes),
      signal: AbortSignal.timeout(60_000),
    });
    await put.arrayBuffer();
    if (put.status !== 200) throw new UploadUrlError(put.status);
    ids.push(res.file_id);
  }
  await budget.take('files.completeUploadExternal');
  const done = (await client.apiCall('files.completeUploadExternal', {
    files: JSON.stringify(
      files.map((f, i) => ({ id: ids[i]!, ...(f.title ? { title: f.title } : {}) })),
    ),
    channel_id: share.channelId,
    ...(share.threadTs ? { thread_ts: share.threadTs } : {}),
    ...(share.initialComment ? { initial_comment: share.initialComment } : {}),
  })) as { files?: Array<{ id?: string; title?: string }> };
  return ids.map((id) => ({ id, title: done.files?.find((f) => f.id === id)?.title }));
}

/**
 * Bytes Slack can preview: png, jpg, jpeg and gif render in an image block's `slack_file`;
 * WebP does not, so it is re-encoded losslessly as PNG (what the user sees is what was made).
 * Undefined when the bytes cannot be decoded: upload them as they are, without a preview.
 */
export async function previewable(
  bytes: Buffer,
  contentType: string,
): Promise<{ bytes: Buffer; extension: 'png' | 'jpg' } | undefined> {
  if (contentType === 'image/png') return { bytes, extension: 'png' };
  if (contentType === 'image/jpeg') return { bytes, extension: 'jpg' };
  try {
    return { bytes: await sharp(bytes).png().toBuffer(), extension: 'png' };
  } catch {
    return undefined;
  }
}
