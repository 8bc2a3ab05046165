/**
 * Reply targets are sealed by the bot with AES-256-GCM under a key derived from the relay
 * secret, carried unread by the worker, and opened by any relay instance. Stateless delivery:
 * a relay restarted since the job was queued can still deliver.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ImagineError } from './errors.ts';

/** Where a Discord reply goes. */
export const DiscordTargetSchema = z.object({
  platform: z.literal('discord'),
  applicationId: z.string(),
  interactionToken: z.string(),
  /** When the token was issued (ms): it works for 15 minutes. */
  issuedAt: z.number(),
  channelId: z.string().optional(),
  guildId: z.string().optional(),
  userId: z.string(),
  messageId: z.string().optional(),
  /** The interaction's `attachment_size_limit`, bytes. */
  attachmentSizeLimit: z.number().int().positive().optional(),
  /** Follow-up (variations) rather than the original response. */
  followUp: z.boolean().optional(),
  /** Only the user sees the answer (their `visibility=private` default): never post to the channel. */
  ephemeral: z.boolean().optional(),
});

/** Where a Slack reply goes. */
export const SlackTargetSchema = z.object({
  platform: z.literal('slack'),
  teamId: z.string().optional(),
  channelId: z.string(),
  statusTs: z.string().optional(),
  threadTs: z.string().optional(),
  userId: z.string(),
  responseUrl: z.string().optional(),
  /** When `responseUrl` was issued (ms): Slack honours it for 30 minutes. */
  responseUrlIssuedAt: z.number().optional(),
  /** Upload the image beside the status message (DMs) instead of in its thread. */
  inline: z.boolean().optional(),
  /** A vary's or upscale's input, when it is a Slack file: the card's Re-roll varies it again. */
  inputFileId: z.string().max(64).optional(),
});

/** Any chat reply target. */
export const ReplyTargetSchema = z.discriminatedUnion('platform', [
  DiscordTargetSchema,
  SlackTargetSchema,
]);
/** Any chat reply target. */
export type ReplyTarget = z.infer<typeof ReplyTargetSchema>;
/** A Discord reply target. */
export type DiscordTarget = z.infer<typeof DiscordTargetSchema>;
/** A Slack reply target. */
export type SlackTarget = z.infer<typeof SlackTargetSchema>;

const keys = new Map<string, Buffer>();
function keyFor(secret: string): Buffer {
  let key = keys.get(secret);
  if (!key) {
    key = Buffer.from(hkdfSync('sha256', secret, 'imagine', 'reply-target/v1', 32));
    keys.set(secret, key);
  }
  return key;
}

/** Seal a reply target: `v1.<base64url(iv | ciphertext | tag)>`. */
export function sealReplyTarget(secret: string, target: ReplyTarget): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keyFor(secret), iv);
  const data = Buffer.concat([cipher.update(JSON.stringify(target), 'utf8'), cipher.final()]);
  return `v1.${Buffer.concat([iv, data, cipher.getAuthTag()]).toString('base64url')}`;
}

/** Open a sealed reply target; throws `INVALID_PUSH` when forged, tampered or malformed. */
export function openReplyTarget(secret: string, sealed: string): ReplyTarget {
  try {
    if (!sealed.startsWith('v1.')) throw new Error('unknown seal version');
    const raw = Buffer.from(sealed.slice(3), 'base64url');
    if (raw.length < 12 + 16 + 2) throw new Error('too short');
    const decipher = createDecipheriv('aes-256-gcm', keyFor(secret), raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    const plain = Buffer.concat([
      decipher.update(raw.subarray(12, raw.length - 16)),
      decipher.final(),
    ]);
    return ReplyTargetSchema.parse(JSON.parse(plain.toString('utf8')));
  } catch (err) {
    throw new ImagineError('INVALID_PUSH', 'reply target cannot be opened', { cause: err });
  }
}
