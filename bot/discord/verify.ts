/**
 * Ed25519 verification of HTTP interactions, with node:crypto: the signature covers
 * `timestamp + rawBody`. Discord sends deliberately bad signatures to check the endpoint.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { ImagineError } from '../../contracts/errors.ts';

/** Signatures older (or newer) than this are refused as stale. */
export const SIGNATURE_MAX_AGE_SECONDS = 300;

// SubjectPublicKeyInfo header of a raw 32-byte Ed25519 key.
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Import the application's public key (hex, as the developer portal shows it). */
export function discordPublicKey(hex: string): KeyObject {
  const raw = Buffer.from(hex, 'hex');
  if (raw.length !== 32 || !/^[0-9a-f]{64}$/i.test(hex))
    throw new ImagineError('BAD_REQUEST', 'DISCORD_PUBLIC_KEY must be 64 hex characters');
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** Throw a 401-coded error unless the request is signed by `key` and fresh. */
export function verifyDiscordSignature(
  key: KeyObject,
  headers: { signature: string | undefined; timestamp: string | undefined },
  rawBody: Buffer,
  nowMs: number = Date.now(),
): void {
  const { signature, timestamp } = headers;
  if (!signature || !timestamp)
    throw new ImagineError(
      'MISSING_SIGNATURE',
      'X-Signature-Ed25519 and X-Signature-Timestamp required',
    );
  if (!/^[0-9a-f]{128}$/i.test(signature))
    throw new ImagineError('BAD_SIGNATURE', 'signature is not 64 bytes of hex');
  const ok = verify(
    null,
    Buffer.concat([Buffer.from(timestamp, 'utf8'), rawBody]),
    key,
    Buffer.from(signature, 'hex'),
  );
  if (!ok) throw new ImagineError('BAD_SIGNATURE', 'signature does not verify');
  const ts = Number(timestamp);
  if (!Number.isFinite(ts) || Math.abs(nowMs / 1000 - ts) > SIGNATURE_MAX_AGE_SECONDS)
    throw new ImagineError('STALE_SIGNATURE', 'signature timestamp is outside the allowed window');
}
