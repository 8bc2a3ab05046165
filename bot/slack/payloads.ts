/**
 * The shapes of what Slack sends to `POST /slack/events`, checked at the edge (after the
 * signature, before Bolt): a signed body that is not one of them — `{"type":"shortcut"}` with
 * no user, an `event_callback` whose `event` is null, a command without a channel — is a 400
 * that says what is missing, never a listener that throws on it. Only the fields the adapter
 * and Bolt read are required; everything else passes through untouched.
 */
import { z } from 'zod';
import { ImagineError } from '../../contracts/errors.ts';

const id = z.string().min(1).max(255);
const user = z.looseObject({ id });

/** A slash command (form fields). */
const SlashCommand = z.looseObject({
  command: z.string().regex(/^\/\S{1,64}$/),
  text: z.string().max(40_000).default(''),
  user_id: id,
  channel_id: id,
  team_id: id,
  response_url: z.string().max(2000).optional(),
  trigger_id: z.string().max(255).optional(),
});

const BlockActions = z.looseObject({
  type: z.literal('block_actions'),
  user,
  actions: z
    .array(z.looseObject({ action_id: z.string().min(1).max(255), type: z.string() }))
    .min(1)
    .max(25),
  container: z.looseObject({}).optional(),
  channel: z.looseObject({ id }).optional(),
  message: z.looseObject({ ts: z.string() }).optional(),
  response_url: z.string().max(2000).optional(),
  trigger_id: z.string().max(255).optional(),
});

const ViewSubmission = z.looseObject({
  type: z.enum(['view_submission', 'view_closed']),
  user,
  view: z.looseObject({
    callback_id: z.string().max(255),
    state: z.looseObject({ values: z.record(z.string(), z.unknown()) }).optional(),
    private_metadata: z.string().max(3000).optional(),
  }),
});

const Shortcut = z.looseObject({
  type: z.literal('shortcut'),
  callback_id: z.string().min(1).max(255),
  trigger_id: z.string().min(1).max(255),
  user,
});

const MessageAction = z.looseObject({
  type: z.literal('message_action'),
  callback_id: z.string().min(1).max(255),
  trigger_id: z.string().min(1).max(255),
  user,
  channel: z.looseObject({ id }),
  message: z.looseObject({ ts: z.string().min(1), files: z.array(z.unknown()).optional() }),
  response_url: z.string().max(2000).optional(),
});

/** The events the adapter listens to, in full; any other event needs only a type. */
const MessageEvent = z.looseObject({
  type: z.literal('message'),
  channel: id,
  ts: z.string().min(1).max(64).optional(),
  user: id.optional(),
  text: z.string().max(40_000).optional(),
  subtype: z.string().optional(),
  thread_ts: z.string().optional(),
  channel_type: z.string().optional(),
  files: z.array(z.unknown()).optional(),
});
const AppHomeOpened = z.looseObject({
  type: z.literal('app_home_opened'),
  user: id,
  channel: id.optional(),
  tab: z.string().optional(),
});
const OtherEvent = z.looseObject({
  type: z.string().min(1).max(255),
  // Bolt reads a conversation from these: a string, or an object with an id.
  channel: z.union([id, z.looseObject({ id })]).optional(),
  user: z.union([id, z.looseObject({ id })]).optional(),
});
const SlackEvent = z.unknown().transform((value, ctx) => {
  const type = (value as { type?: unknown } | null)?.type;
  const schema =
    type === 'message' ? MessageEvent : type === 'app_home_opened' ? AppHomeOpened : OtherEvent;
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, message: issue.message });
  return z.NEVER;
});

const EventCallback = z.looseObject({
  type: z.literal('event_callback'),
  event_id: z.string().min(1).max(255),
  team_id: id.optional(),
  event: SlackEvent,
});

const Interactive = z.discriminatedUnion('type', [
  BlockActions,
  ViewSubmission,
  Shortcut,
  MessageAction,
  EventCallback,
]);

/** What a checked body is. */
export type SlackBodyKind = 'command' | 'interactive' | 'rate_limited';

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'malformed';
  const path = issue.path.join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}

/**
 * Check a parsed, signed body; returns it (defaults filled in) or throws `BAD_REQUEST` naming
 * the first field that is wrong. `url_verification` and `ssl_check` are answered before this.
 */
export function checkSlackBody(body: Record<string, unknown>): {
  kind: SlackBodyKind;
  body: Record<string, unknown>;
} {
  // Slack tells an app it is over the Events API limit with this; nothing to do but say OK.
  if (body.type === 'app_rate_limited') return { kind: 'rate_limited', body };
  if ('command' in body) {
    const parsed = SlashCommand.safeParse(body);
    if (!parsed.success)
      throw new ImagineError(
        'BAD_REQUEST',
        `not a Slack slash command (${describe(parsed.error)})`,
      );
    return { kind: 'command', body: parsed.data };
  }
  const parsed = Interactive.safeParse(body);
  if (!parsed.success)
    throw new ImagineError(
      'BAD_REQUEST',
      `not a Slack request this app handles (${describe(parsed.error)})`,
    );
  return { kind: 'interactive', body: parsed.data };
}
