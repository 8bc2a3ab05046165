/**
 * Worker → relay: signed multipart pushes (`meta` JSON part + `image` file part).
 * Transient failures (network, 5xx, 429) are retried with backoff; a 4xx is final.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ImagineError } from '../contracts/errors.ts';
import { extensionFor } from '../contracts/image-types.ts';
import { type PushMeta, SIGNATURE_HEADER, signPush, TIMESTAMP_HEADER } from '../contracts/push.ts';

/** Sends pushes to the relay. */
export interface RelayPusher {
  push(meta: PushMeta, image?: Buffer): Promise<{ duplicate: boolean }>;
}

/** Options of {@link createRelayPusher}. */
export interface RelayPusherOptions {
  relayUrl: string;
  secret: string;
  attempts?: number;
  fetch?: typeof fetch;
}

/** Encode a push body exactly as sent, so the signature covers the very bytes. */
export async function encodePush(
  meta: PushMeta,
  image?: Buffer,
): Promise<{ body: Buffer; contentType: string }> {
  const form = new FormData();
  form.set('meta', new Blob([JSON.stringify(meta)], { type: 'application/json' }));
  if (image) {
    const type = meta.contentType ?? 'image/png';
    form.set(
      'image',
      new Blob([image as Uint8Array<ArrayBuffer>], { type }),
      `${meta.jobId}.${extensionFor(type)}`,
    );
  }
  const request = new Request('http://push.invalid/', { method: 'POST', body: form });
  return {
    body: Buffer.from(await request.arrayBuffer()),
    contentType: request.headers.get('content-type')!,
  };
}

/** Build a pusher for one relay. */
export function createRelayPusher(opts: RelayPusherOptions): RelayPusher {
  const doFetch = opts.fetch ?? fetch;
  const url = new URL('/push', opts.relayUrl).toString();
  const attempts = opts.attempts ?? 5;
  return {
    async push(meta, image) {
      const { body, contentType } = await encodePush(meta, image);
      let lastError: unknown;
      for (let attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0) await sleep(Math.min(5000, 200 * 2 ** attempt));
        const { timestamp, signature } = signPush(opts.secret, body);
        try {
          const response = await doFetch(url, {
            method: 'POST',
            headers: {
              'content-type': contentType,
              [TIMESTAMP_HEADER]: timestamp,
              [SIGNATURE_HEADER]: signature,
            },
            body: body as Uint8Array<ArrayBuffer>,
          });
          const text = await response.text();
          if (response.ok)
            return { duplicate: Boolean((JSON.parse(text) as { duplicate?: boolean }).duplicate) };
          lastError = new ImagineError(
            response.status >= 500 || response.status === 429 ? 'DELIVERY_FAILED' : 'INVALID_PUSH',
            `relay answered HTTP ${response.status}: ${text.slice(0, 300)}`,
          );
          if (response.status < 500 && response.status !== 429) throw lastError;
        } catch (err) {
          if (err instanceof ImagineError && err.code === 'INVALID_PUSH') throw err;
          lastError = err;
        }
      }
      throw new ImagineError('DELIVERY_FAILED', 'relay cannot be reached', { cause: lastError });
    },
  };
}
