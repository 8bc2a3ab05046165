import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscordApi } from '../../bot/discord/api.ts';
import { inviteUrl, registerCommands } from '../../bot/discord/register.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';

const run = promisify(execFile);

describe('command registration', () => {
  let fake: FakeDiscord;
  beforeAll(async () => {
    fake = await startFakeDiscord();
  });
  afterAll(async () => {
    await fake?.close();
  });

  it('registers /imagine to one guild, finding the application id from the token', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const result = await registerCommands({ api, guildId: '600000000000000042' });
    expect(result.applicationId).toBe(fake.applicationId);
    const stored = fake.commands.get('guild:600000000000000042') as Array<{
      name: string;
      options: Array<{ name: string; required?: boolean; choices?: unknown[] }>;
    }>;
    const imagine = stored.find((c) => c.name === 'imagine')!;
    expect(imagine.options.map((o) => o.name)).toEqual([
      'prompt',
      'image',
      'strength',
      'count',
      'aspect',
      'seed',
      'model',
    ]);
    // Without MODELS there is nothing to choose from: model stays free text, checked on submit.
    expect(imagine.options[6]?.choices).toBeUndefined();
    expect(imagine.options[0]?.required).toBe(true);
    expect(imagine.options[4]?.choices).toHaveLength(7);
  });

  it('the invite URL asks for bot + applications.commands and the permissions delivery needs', () => {
    const url = new URL(inviteUrl('123'));
    expect(url.searchParams.get('client_id')).toBe('123');
    expect(url.searchParams.get('scope')?.split(' ').sort()).toEqual([
      'applications.commands',
      'bot',
    ]);
    // View Channel, Send Messages, Embed Links, Attach Files, Read Message History.
    expect(url.searchParams.get('permissions')).toBe(
      String(1024 + 2048 + 16384 + 32768 + 65536 + 2 ** 38),
    );
  });

  it('`npm run discord:register` registers globally and prints the invite', async () => {
    const { stdout } = await run(process.execPath, ['bot/discord/register.ts'], {
      env: {
        ...process.env,
        DISCORD_TOKEN: fake.botToken,
        DISCORD_APPLICATION_ID: fake.applicationId,
        DISCORD_API_URL: fake.apiUrl,
        DISCORD_GUILD_ID: '',
        LOG_LEVEL: 'silent',
      },
    });
    expect(stdout).toMatch(/Registered \/imagine/);
    expect(stdout).toContain(`client_id=${fake.applicationId}`);
    expect(fake.commands.get('global')).toBeDefined();
  });
});
