/**
 * Interaction payloads are checked at the edge (zod) before any handler reads them: a signed
 * body with an option of the wrong type, a `guild_id` array or a missing token is answered with
 * a 400 (HTTP) or an ephemeral message (gateway), never a thrown handler or a job that
 * dead-letters without a word. Only the fields imagine reads are checked; the rest pass through.
 */
import type { APIInteraction } from 'discord.js';
import { z } from 'zod';
import { ImagineError } from '../../contracts/errors.ts';

const snowflake = z.string().regex(/^\d{1,20}$/, 'must be a snowflake (digits)');
const permissions = z.string().regex(/^\d{1,40}$/, 'must be a permission bit set (digits)');

const UserSchema = z.looseObject({
  id: snowflake,
  username: z.string().max(100),
  global_name: z.string().max(100).nullish(),
});

const ChannelSchema = z.looseObject({
  id: snowflake,
  type: z.number().int(),
  parent_id: snowflake.nullish(),
});

/** An attachment as interactions carry it (resolved command options, a message's files). */
export const AttachmentSchema = z.looseObject({
  id: snowflake,
  filename: z.string().min(1).max(1024),
  size: z.number().int().nonnegative(),
  url: z.url().max(4096),
  proxy_url: z.url().max(4096).optional(),
  content_type: z.string().max(200).optional(),
  width: z.number().int().nonnegative().nullish(),
  height: z.number().int().nonnegative().nullish(),
});
/** An attachment on a message or resolved in a command. */
export type Attachment = z.infer<typeof AttachmentSchema>;

const name = z.string().min(1).max(32);
// Each option type carries a value of its own type: a string where an integer belongs is refused.
const valueOption = <T extends z.ZodType>(type: number, value: T) =>
  z.looseObject({ name, type: z.literal(type), value, focused: z.boolean().optional() });

type Option = { name: string; type: number; value?: unknown; options?: Option[] | undefined };
const OptionSchema: z.ZodType<Option> = z.lazy(() =>
  z.discriminatedUnion('type', [
    z.looseObject({ name, type: z.literal(1), options: z.array(OptionSchema).max(25).optional() }),
    z.looseObject({ name, type: z.literal(2), options: z.array(OptionSchema).max(25).optional() }),
    valueOption(3, z.string().max(6000)),
    valueOption(4, z.number().int()),
    valueOption(5, z.boolean()),
    valueOption(6, snowflake),
    valueOption(7, snowflake),
    valueOption(8, snowflake),
    valueOption(9, snowflake),
    valueOption(10, z.number()),
    valueOption(11, snowflake),
  ]),
);

const BaseSchema = z.looseObject({
  id: snowflake,
  application_id: snowflake,
  token: z.string().min(1).max(1000),
  version: z.number().int().optional(),
  guild_id: snowflake.optional(),
  channel_id: snowflake.optional(),
  channel: ChannelSchema.optional(),
  member: z.looseObject({ user: UserSchema, permissions: permissions.optional() }).optional(),
  user: UserSchema.optional(),
  app_permissions: permissions.optional(),
  attachment_size_limit: z.number().int().positive().optional(),
});

const PingSchema = BaseSchema.extend({ type: z.literal(1) });

const CommandSchema = BaseSchema.extend({
  type: z.literal(2),
  data: z.looseObject({
    id: snowflake,
    name,
    type: z.number().int(),
    options: z.array(OptionSchema).max(25).optional(),
    resolved: z
      .looseObject({ attachments: z.record(snowflake, AttachmentSchema).optional() })
      .optional(),
  }),
});

const MessageSchema = z.looseObject({
  id: snowflake,
  channel_id: snowflake,
  embeds: z.array(z.looseObject({ description: z.string().max(4096).optional() })).max(10),
  attachments: z.array(AttachmentSchema).max(10),
});

const ComponentSchema = BaseSchema.extend({
  type: z.literal(3),
  data: z.looseObject({
    custom_id: z.string().min(1).max(100),
    component_type: z.number().int(),
    values: z.array(z.string().max(100)).max(25).optional(),
  }),
  message: MessageSchema,
});

// Autocomplete (4) and modal submits (5) are answered "not supported" by the dispatcher.
const OtherSchema = BaseSchema.extend({ type: z.union([z.literal(4), z.literal(5)]) });

const InteractionSchema = z.discriminatedUnion('type', [
  PingSchema,
  CommandSchema,
  ComponentSchema,
  OtherSchema,
]);

/** The id and token of a payload, when it has usable ones (to answer a malformed interaction). */
export function replyHandleOf(raw: unknown): { id: string; token: string } | undefined {
  const parsed = z.object({ id: snowflake, token: z.string().min(1).max(1000) }).safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}

/** Check an interaction payload; throws `BAD_REQUEST` saying which field is wrong. */
export function parseInteraction(raw: unknown): APIInteraction {
  const parsed = InteractionSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : 'interaction';
    throw new ImagineError(
      'BAD_REQUEST',
      `malformed interaction: ${where}: ${issue?.message ?? 'invalid'}`,
    );
  }
  // The checked fields match discord-api-types' shapes; the others passed through untouched.
  return parsed.data as unknown as APIInteraction;
}
