/**
 * Who may moderate, decided on the server for every admin command, whatever the platform's own
 * command gate says (a server owner can re-open a command to everyone in Discord's settings).
 */

/** Discord permission bits (https://discord.com/developers/docs/topics/permissions). */
export const DISCORD_PERMISSIONS = {
  ADMINISTRATOR: 1n << 3n,
  MANAGE_GUILD: 1n << 5n,
  /** "Allows for deletion of other users messages": Discord's own moderator permission. */
  MANAGE_MESSAGES: 1n << 13n,
} as const;

/** `default_member_permissions` for moderator-only Discord commands: Manage Guild. */
export const DISCORD_MODERATOR_PERMISSIONS = String(DISCORD_PERMISSIONS.MANAGE_GUILD);

/** What a Slack `users.info` answer says about a user's role. */
export interface SlackUserRole {
  is_admin?: boolean;
  is_owner?: boolean;
  is_primary_owner?: boolean;
}

/** What the platform tells us about the caller, for the moderator decision. */
export type ModeratorEvidence =
  | {
      platform: 'discord';
      /** `member.permissions` of the interaction (a decimal bitfield); absent in DMs. */
      permissions: string | undefined;
    }
  | {
      platform: 'slack';
      userId: string;
      /** Calls `users.info` for the user (undefined when the lookup fails). */
      lookupUser(userId: string): Promise<SlackUserRole | undefined>;
    };

/** Whether a Discord permissions bitfield includes Manage Guild or Administrator. */
export function discordCanModerate(permissions: string | undefined): boolean {
  if (permissions === undefined || !/^\d{1,40}$/.test(permissions)) return false;
  const bits = BigInt(permissions);
  return (
    (bits & DISCORD_PERMISSIONS.ADMINISTRATOR) !== 0n ||
    (bits & DISCORD_PERMISSIONS.MANAGE_GUILD) !== 0n
  );
}

/**
 * Whether a Discord member may moderate others' jobs where they clicked (Cancel someone else's
 * job, Approve / Reject a held image): Manage Messages, the permission Discord gives the people
 * who remove other users' messages, or what {@link discordCanModerate} counts. The interaction's
 * `member.permissions` is the member's total in that channel, overwrites included, so a
 * moderator of one channel moderates there. Settings (`/imagine-admin`) stay Manage Server's.
 */
export function discordCanModerateJobs(permissions: string | undefined): boolean {
  if (discordCanModerate(permissions)) return true;
  if (permissions === undefined || !/^\d{1,40}$/.test(permissions)) return false;
  return (BigInt(permissions) & DISCORD_PERMISSIONS.MANAGE_MESSAGES) !== 0n;
}

/** Whether the caller may moderate. Any failure to find out means no. */
export async function canModerate(
  evidence: ModeratorEvidence,
  opts: { slackAdminUsers: readonly string[] },
): Promise<boolean> {
  if (evidence.platform === 'discord') return discordCanModerate(evidence.permissions);
  if (opts.slackAdminUsers.includes(evidence.userId)) return true;
  const role = await evidence.lookupUser(evidence.userId).catch(() => undefined);
  return role?.is_admin === true || role?.is_owner === true || role?.is_primary_owner === true;
}
