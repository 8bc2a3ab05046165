/** Helpers for Discord tests: a generator the test can hold, an Ed25519 signer, request filters. */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import type { GeneratedImage, GenerateRequest, Generator } from '../../../worker/generator.ts';
import { DemoGenerator } from '../../../worker/generators/demo.ts';
import type { FakeDiscord, RecordedRequest } from './server.ts';

/** Configuration that lets the worker fetch input images from the fake's CDN (loopback http). */
export function inputHosts(fake: FakeDiscord): Record<string, string> {
  return { INPUT_IMAGE_HOSTS: fake.cdnHost, INPUT_IMAGE_ALLOW_HTTP: 'true' };
}

/** The demo generator, held at the start of each generation until the test releases it. */
export class GatedGenerator implements Generator {
  readonly name = 'demo';
  private readonly inner = new DemoGenerator();
  private gate: PromiseWithResolvers<void> | undefined;

  /** Hold generations from now on. */
  hold(): void {
    this.gate ??= Promise.withResolvers<void>();
  }

  /** Let held and future generations run. */
  release(): void {
    this.gate?.resolve();
    this.gate = undefined;
  }

  async generate(req: GenerateRequest, opts: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    if (this.gate) await this.gate.promise;
    return this.inner.generate(req, opts);
  }
}

/** An application key pair, signing the way Discord does (timestamp + body). */
export function discordSigner(): {
  publicKeyHex: string;
  privateKey: KeyObject;
  headers(body: string, timestamp?: number, key?: KeyObject): Record<string, string>;
} {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const x = publicKey.export({ format: 'jwk' }).x!;
  return {
    publicKeyHex: Buffer.from(x, 'base64url').toString('hex'),
    privateKey,
    headers(body, timestamp = Math.floor(Date.now() / 1000), key = privateKey) {
      const ts = String(timestamp);
      return {
        'x-signature-ed25519': sign(null, Buffer.from(ts + body), key).toString('hex'),
        'x-signature-timestamp': ts,
      };
    },
  };
}

/** Webhook requests on an interaction token (edits of `@original` unless `messageId`). */
export function isEdit(token: string, messageId = '@original') {
  return (r: RecordedRequest) =>
    r.method === 'PATCH' && decodeURIComponent(r.path).endsWith(`/${token}/messages/${messageId}`);
}

/** An edit carrying a file. */
export function isImageEdit(token: string, messageId = '@original') {
  const edit = isEdit(token, messageId);
  return (r: RecordedRequest) => edit(r) && r.status === 200 && r.files.length > 0;
}

/** The embed fields of a recorded message body, by name. */
export function fieldsOf(body: Record<string, unknown> | undefined): Record<string, string> {
  const embeds = (body?.embeds ?? []) as Array<{ fields?: Array<{ name: string; value: string }> }>;
  return Object.fromEntries((embeds[0]?.fields ?? []).map((f) => [f.name, f.value]));
}

/** The custom ids of the buttons of a recorded message body. */
export function customIdsOf(body: Record<string, unknown> | undefined): string[] {
  const rows = (body?.components ?? []) as Array<{ components: Array<{ custom_id?: string }> }>;
  return rows.flatMap((r) => r.components.map((c) => c.custom_id ?? ''));
}

/** The first embed of a recorded message body. */
export function embedOf(body: Record<string, unknown> | undefined): {
  description?: string;
  image?: { url: string };
} {
  const embeds = (body?.embeds ?? []) as Array<{ description?: string; image?: { url: string } }>;
  return embeds[0] ?? {};
}
