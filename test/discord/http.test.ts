import { generateKeyPairSync } from 'node:crypto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discordSigner, fieldsOf, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

describe('Discord over HTTP interactions (real Ed25519 signatures)', () => {
  let fake: FakeDiscord;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const signer = discordSigner();
  const endpoint = () => `${app.url}/discord/interactions`;

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine({
      DISCORD_PUBLIC_KEY: signer.publicKeyHex,
      DISCORD_API_URL: fake.apiUrl,
    });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  const post = (body: string, headers: Record<string, string>) =>
    fetch(endpoint(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
    });

  it('answers a signed PING with PONG', async () => {
    const body = JSON.stringify(fake.pingInteraction());
    const res = await post(body, signer.headers(body));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ type: 1 });
  });

  it('401 on a signature from another key (Discord’s deliberate bad-signature check)', async () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    const body = JSON.stringify(fake.pingInteraction());
    const res = await post(body, signer.headers(body, undefined, other));
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('BAD_SIGNATURE');
  });

  it('401 when the body was altered after signing', async () => {
    const body = JSON.stringify(fake.pingInteraction());
    const res = await post(body.replace('"type":1', '"type":2'), signer.headers(body));
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('BAD_SIGNATURE');
  });

  it('401 on a stale (validly signed) timestamp', async () => {
    const body = JSON.stringify(fake.pingInteraction());
    const res = await post(body, signer.headers(body, Math.floor(Date.now() / 1000) - 600));
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('STALE_SIGNATURE');
  });

  it('401 without signature headers, and on garbage signatures', async () => {
    const body = JSON.stringify(fake.pingInteraction());
    const missing = await post(body, {});
    expect(missing.status).toBe(401);
    const garbage = await post(body, {
      'x-signature-ed25519': 'zz',
      'x-signature-timestamp': String(Math.floor(Date.now() / 1000)),
    });
    expect(garbage.status).toBe(401);
  });

  it('/imagine: deferred in the HTTP response, then the image edited in place', async () => {
    const interaction = fake.commandInteraction({ prompt: 'a paper boat', aspect: '1:1', seed: 3 });
    const res = await fake.postInteraction(endpoint(), interaction, (b) => signer.headers(b));
    expect(res).toMatchObject({ status: 200, body: { type: 5 } });
    const final = await fake.waitFor(isImageEdit(interaction.token));
    expect(fieldsOf(final.body).Seed).toBe('3');
    const meta = await sharp(final.files[0]!.bytes).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1024, 1024]);
  });

  it('a button click over HTTP re-rolls from the message alone', async () => {
    const first = fake.commandInteraction({ prompt: 'a paper boat', aspect: '1:1', seed: 3 });
    await fake.postInteraction(endpoint(), first, (b) => signer.headers(b));
    await fake.waitFor(isImageEdit(first.token));
    const click = fake.buttonInteraction(fake.original(first.token)!, 'reroll|1:1');
    const res = await fake.postInteraction(endpoint(), click, (b) => signer.headers(b));
    expect(res.body).toEqual({ type: 5 });
    const final = await fake.waitFor(isImageEdit(click.token));
    expect(fieldsOf(final.body).Seed).not.toBe('3');
  });

  it('refuses a bad prompt ephemerally in the HTTP response', async () => {
    const interaction = fake.commandInteraction({ prompt: 'x'.repeat(1001) });
    const res = await fake.postInteraction(endpoint(), interaction, (b) => signer.headers(b));
    expect(res.body).toMatchObject({ type: 4, data: { flags: 64 } });
    // Pings nobody, whatever the text says.
    expect(res.body).toMatchObject({ data: { allowed_mentions: { parse: [] } } });
  });
});
