/**
 * Input image URLs: the relay's own short-lived signed URLs (`/inputs/<token>`, to a web upload
 * or a result still in its buffer) and the allow-list every other input URL must pass. The
 * relay signs tokens; the submit path and the worker check a URL before anyone fetches it.
 * A token is `<payload>.<mac>`: payload = base64url(JSON {k, id, i?, exp}), mac =
 * base64url(HMAC-SHA256(key, payload)) with a key derived from RELAY_SECRET for this use only.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ImagineError } from './errors.ts';

/** The path prefix of the relay's input URLs. */
export const INPUT_PATH = '/inputs/';

/** What an input token points at: a web upload, or image `i` of a finished job. */
export type InputTarget =
  | { kind: 'upload'; id: string }
  | { kind: 'result'; id: string; i: number };

const PayloadSchema = z.union([
  z.object({ k: z.literal('u'), id: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/), exp: z.number() }),
  z.object({
    k: z.literal('r'),
    id: z.string().regex(/^[A-Za-z0-9_-]{22,64}$/),
    i: z.number().int().min(0).max(3),
    exp: z.number(),
  }),
]);

const keys = new Map<string, Buffer>();
function keyOf(secret: string): Buffer {
  let key = keys.get(secret);
  if (!key) {
    key = Buffer.from(hkdfSync('sha256', secret, 'imagine', 'input-url-v1', 32));
    keys.set(secret, key);
  }
  return key;
}

function mac(secret: string, payload: string): Buffer {
  return createHmac('sha256', keyOf(secret)).update(payload).digest();
}

/** Sign a token for `target`, valid until `expiresAt` (ms). */
export function signInputToken(secret: string, target: InputTarget, expiresAt: number): string {
  const exp = Math.floor(expiresAt / 1000);
  const body =
    target.kind === 'upload'
      ? { k: 'u', id: target.id, exp }
      : { k: 'r', id: target.id, i: target.i, exp };
  const payload = Buffer.from(JSON.stringify(body)).toString('base64url');
  return `${payload}.${mac(secret, payload).toString('base64url')}`;
}

/**
 * Open a token: the target and when it expires (ms), or a coded error (`INPUT_NOT_ALLOWED` for a
 * token we did not sign, `INPUT_EXPIRED` past its time).
 */
export function openInputToken(
  secret: string,
  token: string,
  now: number = Date.now(),
): { target: InputTarget; expiresAt: number } {
  const [payload, given, extra] = token.split('.');
  if (!payload || !given || extra !== undefined || token.length > 512)
    throw new ImagineError('INPUT_NOT_ALLOWED', 'not an input URL this relay signed');
  const expected = mac(secret, payload);
  const givenBytes = Buffer.from(given, 'base64url');
  if (givenBytes.length !== expected.length || !timingSafeEqual(givenBytes, expected))
    throw new ImagineError('INPUT_NOT_ALLOWED', 'not an input URL this relay signed');
  let parsed: z.infer<typeof PayloadSchema>;
  try {
    parsed = PayloadSchema.parse(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
  } catch (err) {
    throw new ImagineError('INPUT_NOT_ALLOWED', 'not an input URL this relay signed', {
      cause: err,
    });
  }
  const expiresAt = parsed.exp * 1000;
  if (now > expiresAt)
    throw new ImagineError('INPUT_EXPIRED', 'the link to that image has expired; send it again');
  return {
    target:
      parsed.k === 'u'
        ? { kind: 'upload', id: parsed.id }
        : { kind: 'result', id: parsed.id, i: parsed.i },
    expiresAt,
  };
}

/** Where an input URL is allowed to be fetched from. */
export interface InputUrlPolicy {
  /** Allowed hosts (`host` or `host:port`), exact and case-insensitive. */
  hosts: readonly string[];
  /** Allow http: (tests with loopback fakes only). */
  allowHttp: boolean;
  /** RELAY_SECRET, to recognise the relay's own signed URLs. */
  secret: string;
}

/** An input URL checked against a policy. */
export type CheckedInputUrl =
  /** The relay's own signed URL: fetch `INPUT_PATH + token` from the relay itself. */
  | { kind: 'relay'; token: string }
  /** An allow-listed URL on a platform's file host. */
  | { kind: 'external'; url: URL };

/** Whether a URL's host is on the list (`host:port` entries must match the port too). */
export function hostAllowed(url: URL, hosts: readonly string[]): boolean {
  const host = url.hostname.toLowerCase();
  const withPort = url.port ? `${host}:${url.port}` : host;
  return hosts.some((entry) => {
    const e = entry.trim().toLowerCase();
    return e.includes(':') && !e.startsWith('[') ? e === withPort : e === host && !url.port;
  });
}

/**
 * Check an input URL before anything fetches it. The relay's own signed URLs (on whatever host
 * the client saw the relay at) are recognised by their signature and always fetched from the
 * relay the worker pushes to; anything else must be https (unless allowed for tests) on an
 * allow-listed host. Throws a coded error saying why not.
 */
export function checkInputUrl(
  raw: string | URL,
  policy: InputUrlPolicy,
  now?: number,
): CheckedInputUrl {
  let url: URL;
  try {
    url = typeof raw === 'string' ? new URL(raw) : raw;
  } catch (err) {
    throw new ImagineError('INPUT_NOT_ALLOWED', 'the input image URL is not a URL', { cause: err });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new ImagineError(
      'INPUT_INSECURE',
      `input images are fetched over https, not ${url.protocol}`,
    );
  if (url.username || url.password)
    throw new ImagineError('INPUT_NOT_ALLOWED', 'input image URLs must not carry credentials');
  if (url.pathname.startsWith(INPUT_PATH)) {
    const token = url.pathname.slice(INPUT_PATH.length);
    try {
      openInputToken(policy.secret, token, now);
      return { kind: 'relay', token };
    } catch (err) {
      // An expired link of ours says so; an unsigned one is judged like any other URL.
      if (err instanceof ImagineError && err.code === 'INPUT_EXPIRED') throw err;
    }
  }
  if (!hostAllowed(url, policy.hosts))
    throw new ImagineError(
      'INPUT_NOT_ALLOWED',
      `input images come from Discord, Slack or this site only, not ${url.host}`,
    );
  if (url.protocol === 'http:' && !policy.allowHttp)
    throw new ImagineError(
      'INPUT_INSECURE',
      `input images are fetched over https only (${url.host})`,
    );
  return { kind: 'external', url };
}

/** The comma-separated host list of configuration, as entries. */
export function parseHostList(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h.length > 0);
}
