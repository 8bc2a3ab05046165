/** Build signed pushes the way a worker in any language would. */

import type { PushMeta } from '../../contracts/push.ts';
import { signPush } from '../../contracts/push.ts';
import { encodePush } from '../../worker/push-client.ts';
import { TEST_SECRET } from './imagine.ts';

/** POST a push to a relay; `sign` can be overridden to test rejections. */
export async function sendPush(
  baseUrl: string,
  meta: PushMeta | Record<string, unknown>,
  image?: Buffer | Buffer[],
  opts: { secret?: string; nowSeconds?: number; headers?: Record<string, string> } = {},
): Promise<Response> {
  const { body, contentType } = encodePush(meta as PushMeta, image);
  return sendRawPush(baseUrl, body, contentType, opts);
}

/** POST raw bytes as a push, signed unless headers override it. */
export async function sendRawPush(
  baseUrl: string,
  body: Buffer,
  contentType: string,
  opts: { secret?: string; nowSeconds?: number; headers?: Record<string, string> } = {},
): Promise<Response> {
  const { timestamp, signature } = signPush(opts.secret ?? TEST_SECRET, body, opts.nowSeconds);
  return fetch(`${baseUrl}/push`, {
    method: 'POST',
    headers: {
      'content-type': contentType,
      'x-imagine-timestamp': timestamp,
      'x-imagine-signature': signature,
      ...opts.headers,
    },
    body: body as Uint8Array<ArrayBuffer>,
  });
}

/** A fresh job id. */
export function testJobId(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString('base64url');
}
