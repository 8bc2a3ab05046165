/**
 * `/imagine-admin` and `/imagine-quota`, platform-neutral: the Discord and Slack command modules
 * turn their payloads into an {@link AdminCommand} plus the caller's {@link ModeratorEvidence};
 * everything else (permission, validation, the change, its audit line, the answer) is here.
 */
import { type ErrorCode, ImagineError } from '../contracts/errors.ts';
import type { Origin } from '../contracts/job.ts';
import {
  BLOCKED_ENTRIES_MAX,
  BLOCKED_ENTRY_MAX_CHARS,
  BUILTIN_BLOCKED_WORDS,
  normaliseBlockedEntry,
} from './blocklist.ts';
import { canModerate, type ModeratorEvidence } from './permissions.ts';
import { formatQuota, type ModerationPolicy, scopeNoun } from './policy.ts';
import {
  type AuditEntry,
  effectiveLimits,
  formatLimit,
  LIMIT_FIELDS,
  type LimitChanges,
  type LimitKey,
  type Limits,
  limitFieldByName,
  limitName,
  scopeKeyOf,
} from './settings.ts';
import { formatUserDefaults, type UserSettingsCommand } from './user-settings.ts';

/** A moderator's command, whatever platform it came from. */
export type AdminCommand =
  | { verb: 'help' }
  | { verb: 'show'; channelId?: string }
  | { verb: 'limits'; channelId?: string; changes: LimitChanges }
  | { verb: 'words-add'; words: string[] }
  | { verb: 'words-remove'; words: string[] }
  | { verb: 'words-list' }
  | { verb: 'channels-allow'; channelIds: string[] }
  | { verb: 'channels-deny'; channelIds: string[] }
  | { verb: 'channels-clear' };

/** Who asks, where, and what the platform says about them. */
export interface AdminRequest {
  platform: 'discord' | 'slack';
  /** Guild id / team id; undefined in a DM. */
  scopeId: string | undefined;
  actor: { id: string; name?: string };
  evidence: ModeratorEvidence;
  command: AdminCommand;
}

/** The answer to show the caller (ephemerally). `code` is set on refusals. */
export interface AdminReply {
  ok: boolean;
  code?: ErrorCode;
  text: string;
}

/** Longest answer: Discord caps message content at 2000 characters. */
export const REPLY_MAX_CHARS = 1900;

/** Usage, shown by `help` and on a malformed command. */
export const ADMIN_USAGE = [
  '`/imagine-admin show [#channel]` — limits, channels, blocked words and recent changes',
  `\`/imagine-admin set [#channel] name=value …\` — names: ${LIMIT_FIELDS.map((f) => f.name).join(', ')}; \`models=a,b\` (last: it takes the rest of the line) lists the models users may choose, \`models=all\` every one; \`value=default\` clears an override; \`set reset [#channel]\` clears all`,
  '`/imagine-admin words add|remove word, phrase, prefix*` · `/imagine-admin words list`',
  '`/imagine-admin channels allow|deny #channel …` · `/imagine-admin channels clear` (all allowed)',
].join('\n');

function clip(text: string): string {
  return text.length <= REPLY_MAX_CHARS ? text : `${text.slice(0, REPLY_MAX_CHARS - 1)}…`;
}

function mention(channelId: string): string {
  return `<#${channelId}>`;
}

const CHANNEL_REF = /^<#([A-Za-z0-9]{1,40})(?:\|[^>]*)?>$|^([A-Z][A-Z0-9]{5,40}|\d{5,25})$/;

/** A channel as typed in Slack (`<#C123|general>`, `C123`) or Discord (`<#123>`, `123`). */
export function parseChannelRef(raw: string): string | undefined {
  const m = CHANNEL_REF.exec(raw.trim());
  return m ? (m[1] ?? m[2]) : undefined;
}

function badCommand(message: string): ImagineError {
  return new ImagineError('BAD_REQUEST', `${message}\n${ADMIN_USAGE}`);
}

/** Parse one `name=value` change (`value=default` clears the override). */
export function parseLimitChange(name: string, raw: string): LimitChanges {
  const field = limitFieldByName(name);
  if (!field) throw badCommand(`unknown setting "${name}"`);
  const value = raw.trim().toLowerCase();
  if (value === 'default' || value === 'reset') return { [field.key]: null };
  const parsed = field.parse(raw);
  if (parsed === undefined)
    throw badCommand(
      `"${raw}" is not a valid ${field.name} (${field.describe}${'min' in field ? `, ${field.min}–${field.max}` : ''})`,
    );
  return { [field.key]: parsed };
}

/** Parse the text of a Slack `/imagine-admin` (also handy in tests). Throws a coded 400. */
export function parseAdminText(text: string): AdminCommand {
  const words = text.trim().split(/\s+/u).filter(Boolean);
  const [first = 'help', ...rest] = words;
  const verb = first.toLowerCase();
  const channelsIn = (items: string[]) =>
    items.map((item) => {
      const id = parseChannelRef(item);
      if (!id)
        throw badCommand(
          `"${item}" is not a channel; pick it with # so it becomes a link (Slack: turn on "Escape channels, users, and links" for the command)`,
        );
      return id;
    });
  switch (verb) {
    case 'help':
      return { verb: 'help' };
    case 'show': {
      const [channel] = channelsIn(rest.slice(0, 1));
      return channel === undefined ? { verb: 'show' } : { verb: 'show', channelId: channel };
    }
    case 'limits':
    case 'set': {
      let args = rest;
      let channelId: string | undefined;
      const head = args[0];
      if (head !== undefined && parseChannelRef(head)) {
        channelId = parseChannelRef(head);
        args = args.slice(1);
      }
      let changes: LimitChanges = {};
      if (args.length === 1 && args[0]?.toLowerCase() === 'reset') {
        for (const f of LIMIT_FIELDS) changes = { ...changes, [f.key]: null };
      } else {
        if (args.length === 0) throw badCommand('say which limits to set, e.g. `per_user=5`');
        // `per_user=5 window=1h`, or `per_user 5 window 1h`.
        for (let i = 0; i < args.length; i++) {
          const arg = args[i]!;
          const eq = arg.indexOf('=');
          if (eq > 0) {
            const name = arg.slice(0, eq);
            // Model names may hold spaces: `models=` takes the rest of the line.
            if (limitFieldByName(name)?.key === 'models') {
              const value = [arg.slice(eq + 1), ...args.slice(i + 1)].join(' ');
              changes = { ...changes, ...parseLimitChange(name, value) };
              break;
            }
            changes = { ...changes, ...parseLimitChange(name, arg.slice(eq + 1)) };
            continue;
          }
          const value = args[++i];
          if (value === undefined) throw badCommand(`"${arg}" needs a value, e.g. ${arg}=5`);
          changes = { ...changes, ...parseLimitChange(arg, value) };
        }
      }
      return channelId === undefined
        ? { verb: 'limits', changes }
        : { verb: 'limits', channelId, changes };
    }
    case 'words':
    case 'word': {
      const [rawAction, ...items] = rest;
      const action = rawAction?.toLowerCase();
      const list = items.join(' ');
      const entries = (list.includes(',') ? list.split(',') : items)
        .map((w) => w.trim())
        .filter(Boolean);
      if (action === 'list') return { verb: 'words-list' };
      if (action === 'add' || action === 'remove') {
        if (entries.length === 0) throw badCommand(`say which words to ${action}`);
        return { verb: action === 'add' ? 'words-add' : 'words-remove', words: entries };
      }
      throw badCommand('`words` takes add, remove or list');
    }
    case 'channels':
    case 'channel': {
      const [rawAction, ...items] = rest;
      const action = rawAction?.toLowerCase();
      if (action === 'clear') return { verb: 'channels-clear' };
      if (action === 'allow' || action === 'deny') {
        if (items.length === 0) throw badCommand(`say which channel to ${action}`);
        const channelIds = channelsIn(items);
        return action === 'allow'
          ? { verb: 'channels-allow', channelIds }
          : { verb: 'channels-deny', channelIds };
      }
      throw badCommand('`channels` takes allow, deny or clear');
    }
    default:
      throw badCommand(`unknown command "${verb}"`);
  }
}

function describeChanges(changes: LimitChanges): string {
  return Object.entries(changes)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      const key = k as LimitKey;
      return `${limitName(key)}=${v === null ? 'default' : formatLimit(key, v as Limits[LimitKey])}`;
    })
    .join(' ');
}

function formatAuditLine(e: AuditEntry): string {
  const when = new Date(e.at).toISOString().slice(0, 16).replace('T', ' ');
  const who = e.actorName ? `${e.actorName} (${e.actorId})` : e.actorId;
  return `• ${when} UTC — ${who}: ${e.action}`;
}

async function show(
  policy: ModerationPolicy,
  platform: 'discord' | 'slack',
  scopeKey: string,
  channelId: string | undefined,
): Promise<string> {
  const settings = await policy.settingsOf(scopeKey);
  const scoped = effectiveLimits(policy.defaults, settings, undefined);
  const here = effectiveLimits(policy.defaults, settings, channelId);
  const channelOverrides = channelId === undefined ? undefined : settings.channels[channelId];
  const noun = scopeNoun(platform);
  const lines = [`**Limits${channelId === undefined ? '' : ` in ${mention(channelId)}`}**`];
  for (const f of LIMIT_FIELDS) {
    const key = f.key;
    const value = formatLimit(key, here[key]);
    const source =
      channelOverrides?.[key] !== undefined
        ? 'channel'
        : settings.limits[key] !== undefined
          ? noun
          : 'default';
    lines.push(`• ${f.name}: ${value} (${source}) — ${f.describe}`);
  }
  const overridden = Object.entries(settings.channels).filter(([, o]) => Object.keys(o).length > 0);
  if (overridden.length > 0) {
    lines.push('**Channel overrides**');
    for (const [channel, o] of overridden)
      lines.push(`• ${mention(channel)}: ${describeChanges(o as LimitChanges)}`);
  }
  lines.push('**Channels**');
  if (settings.allowedChannels.length === 0 && settings.deniedChannels.length === 0)
    lines.push('• /imagine works in every channel');
  if (settings.allowedChannels.length > 0)
    lines.push(`• only in: ${settings.allowedChannels.map(mention).join(', ')}`);
  if (settings.deniedChannels.length > 0)
    lines.push(`• not in: ${settings.deniedChannels.map(mention).join(', ')}`);
  lines.push(
    `**Blocked words**: ${settings.blockedWords.length} set by this ${noun}; built-in list ${scoped.builtinBlockedWords ? 'on' : 'off'} (\`words list\` shows them)`,
  );
  const audit = await policy.store.audit(scopeKey, 10).catch(() => []);
  lines.push('**Recent changes**');
  if (audit.length === 0) lines.push('• none yet');
  for (const entry of audit) lines.push(formatAuditLine(entry));
  return lines.join('\n');
}

/** Run an `/imagine-admin` command: permission re-checked here, for every call. */
export async function runAdminCommand(
  policy: ModerationPolicy,
  req: AdminRequest,
  now: () => number = Date.now,
): Promise<AdminReply> {
  if (req.scopeId === undefined)
    return {
      ok: false,
      code: 'FORBIDDEN',
      text: `/imagine-admin works inside a ${scopeNoun(req.platform)}, not in direct messages.`,
    };
  const allowed = await canModerate(req.evidence, { slackAdminUsers: policy.slackAdminUsers });
  if (!allowed)
    return {
      ok: false,
      code: 'FORBIDDEN',
      text:
        req.platform === 'discord'
          ? '/imagine-admin is for moderators: you need the Manage Server permission.'
          : '/imagine-admin is for workspace admins and owners (and users listed in SLACK_ADMIN_USERS).',
    };
  const scopeKey = scopeKeyOf({ platform: req.platform, scopeId: req.scopeId });
  const audit = (action: string): AuditEntry => ({
    at: now(),
    actorId: req.actor.id,
    ...(req.actor.name === undefined ? {} : { actorName: req.actor.name }),
    action,
  });
  const { command } = req;
  try {
    switch (command.verb) {
      case 'help':
        return { ok: true, text: ADMIN_USAGE };
      case 'show':
        return {
          ok: true,
          text: clip(await show(policy, req.platform, scopeKey, command.channelId)),
        };
      case 'limits': {
        const changes = Object.fromEntries(
          Object.entries(command.changes).filter(([, v]) => v !== undefined),
        ) as LimitChanges;
        if (Object.keys(changes).length === 0)
          return { ok: false, code: 'BAD_REQUEST', text: `Nothing to change.\n${ADMIN_USAGE}` };
        const models = changes.models;
        if (models && models.length > 0) {
          const unknown = models.filter((m) => !policy.models.includes(m));
          if (unknown.length > 0)
            return {
              ok: false,
              code: 'BAD_REQUEST',
              text:
                policy.models.length === 0
                  ? 'This imagine offers no choice of model (MODELS is empty), so there is nothing to restrict.'
                  : `Not offered here: ${unknown.join(', ')}. The models offered are ${policy.models.join(', ')}.`,
            };
        }
        const where = command.channelId === undefined ? '' : ` in ${mention(command.channelId)}`;
        const action = `limits${where}: ${describeChanges(changes)}`;
        await policy.change(
          scopeKey,
          command.channelId === undefined
            ? { kind: 'limits', changes }
            : { kind: 'limits', channelId: command.channelId, changes },
          audit(action),
        );
        return {
          ok: true,
          text: clip(
            `Updated ${action}.\n${await show(policy, req.platform, scopeKey, command.channelId)}`,
          ),
        };
      }
      case 'words-add':
      case 'words-remove': {
        const normalised: string[] = [];
        const rejected: string[] = [];
        for (const raw of command.words) {
          const entry = normaliseBlockedEntry(raw);
          if (entry === undefined) rejected.push(raw);
          else if (!normalised.includes(entry)) normalised.push(entry);
        }
        if (rejected.length > 0 || normalised.length === 0)
          return {
            ok: false,
            code: 'BAD_REQUEST',
            text: `Not usable as blocked words (letters or digits, up to ${BLOCKED_ENTRY_MAX_CHARS} characters): ${rejected.join(', ') || '(none given)'}`,
          };
        const adding = command.verb === 'words-add';
        if (adding) {
          const current = await policy.settingsOf(scopeKey);
          const total = new Set([...current.blockedWords, ...normalised]).size;
          if (total > BLOCKED_ENTRIES_MAX)
            return {
              ok: false,
              code: 'BAD_REQUEST',
              text: `A ${scopeNoun(req.platform)} can block at most ${BLOCKED_ENTRIES_MAX} words or phrases.`,
            };
        }
        const action = `words ${adding ? 'add' : 'remove'}: ${normalised.join(', ')}`;
        await policy.change(
          scopeKey,
          { kind: adding ? 'words-add' : 'words-remove', words: normalised },
          audit(action),
        );
        return {
          ok: true,
          text: `Blocked ${adding ? 'words added' : 'words removed'}: ${normalised.join(', ')}`,
        };
      }
      case 'words-list': {
        const settings = await policy.settingsOf(scopeKey);
        const limits = effectiveLimits(policy.defaults, settings, undefined);
        const lines = [
          settings.blockedWords.length > 0
            ? `Blocked by this ${scopeNoun(req.platform)}: ${settings.blockedWords.join(', ')}`
            : `This ${scopeNoun(req.platform)} has blocked no words of its own.`,
          limits.builtinBlockedWords
            ? `Built-in list (on; \`limits builtin_words=off\` turns it off): ${BUILTIN_BLOCKED_WORDS.join(', ')}`
            : 'Built-in list: off.',
        ];
        return { ok: true, text: clip(lines.join('\n')) };
      }
      case 'channels-allow':
      case 'channels-deny': {
        const allow = command.verb === 'channels-allow';
        for (const channelId of command.channelIds)
          await policy.change(
            scopeKey,
            { kind: allow ? 'channel-allow' : 'channel-deny', channelId },
            audit(`channels ${allow ? 'allow' : 'deny'} ${mention(channelId)}`),
          );
        return {
          ok: true,
          text: `/imagine is now ${allow ? 'allowed' : 'refused'} in ${command.channelIds.map(mention).join(', ')}.`,
        };
      }
      case 'channels-clear':
        await policy.change(scopeKey, { kind: 'channels-clear' }, audit('channels clear'));
        return { ok: true, text: '/imagine now works in every channel.' };
    }
  } catch (err) {
    if (err instanceof ImagineError) return { ok: false, code: err.code, text: err.message };
    throw err;
  }
}

/** Parse Slack text and run it; a malformed command answers with usage. */
export async function runAdminText(
  policy: ModerationPolicy,
  req: Omit<AdminRequest, 'command'> & { text: string },
  now?: () => number,
): Promise<AdminReply> {
  let command: AdminCommand;
  try {
    command = parseAdminText(req.text);
  } catch (err) {
    if (err instanceof ImagineError) {
      // Even a malformed command is refused first to non-moderators: no settings hints leak.
      const gate = await runAdminCommand(policy, { ...req, command: { verb: 'help' } }, now);
      return gate.ok ? { ok: false, code: err.code, text: err.message } : gate;
    }
    throw err;
  }
  return runAdminCommand(policy, { ...req, command }, now);
}

/** `/imagine-quota`: what the caller has left here and when it resets. */
export async function runQuotaCommand(
  policy: ModerationPolicy,
  origin: Origin,
): Promise<AdminReply> {
  try {
    return { ok: true, text: formatQuota(await policy.quota(origin)) };
  } catch (err) {
    if (err instanceof ImagineError) return { ok: false, code: err.code, text: err.message };
    throw err;
  }
}

/**
 * `/imagine-settings`: show, change or reset the caller's own defaults. `privateSupported` says
 * whether the platform can post a result to the user only (Discord can, Slack cannot).
 */
export async function runUserSettingsCommand(
  policy: ModerationPolicy,
  origin: Origin,
  command: UserSettingsCommand,
  opts: { privateSupported: boolean },
): Promise<AdminReply> {
  try {
    const defaults =
      command.verb === 'show'
        ? await policy.userDefaults(origin)
        : await policy.changeUserDefaults(origin, command.verb === 'reset' ? null : command.change);
    const limits = await policy.limitsFor(origin);
    const head =
      command.verb === 'reset'
        ? 'Your defaults are cleared.\n'
        : command.verb === 'set'
          ? 'Saved.\n'
          : '';
    return { ok: true, text: head + formatUserDefaults(defaults, limits, opts) };
  } catch (err) {
    if (err instanceof ImagineError) return { ok: false, code: err.code, text: err.message };
    throw err;
  }
}
