/**
 * Worker → relay in one process (`ROLE=all` with no `RELAY_URL`): pushes are handed to the
 * relay's own push handling (`acceptPush`) instead of going over loopback HTTP, signed, sent and
 * parsed back. The relay checks them exactly as it checks a push over HTTP: the meta goes
 * through the same JSON round trip and schema, the parts through the same agreement checks, the
 * images through the same size, type and structure checks; duplicates, cancels and state
 * changes are decided by the same code. Refusals are the relay's own coded errors; a failure
 * the relay would answer with a 5xx (or 429) is tried again like an HTTP push, then
 * `DELIVERY_FAILED`.
 */
import type { FastifyInstance } from 'fastify';
import { ImagineError } from '../contracts/errors.ts';
import { describeIssues } from '../contracts/job.ts';
import { type PushMeta, PushMetaSchema } from '../contracts/push.ts';
import { acceptPush, checkedParts, type ParsedPush } from '../relay/routes/push.ts';
import { PUSH_ATTEMPTS, PushRefused, type RelayPusher, retryPush } from '../worker/push-client.ts';

/** Options of {@link createInProcessPusher}. */
export interface InProcessPusherOptions {
  /** Tries of a push the relay could not take (a 5xx over HTTP); default {@link PUSH_ATTEMPTS}, as over HTTP. */
  attempts?: number;
}

/**
 * The push as the relay's body parsers hand it on when the push client sends it: the meta parsed
 * from its JSON and checked, and the parts read as that form reads them (a body part is a
 * progress report's preview when the meta says so; a preview sent with images goes multipart).
 */
function parsedPush(
  meta: PushMeta,
  images: Buffer | readonly Buffer[] | undefined,
  preview: Buffer | undefined,
): ParsedPush {
  // The same JSON the wire carries (what JSON cannot hold is refused or dropped just the same),
  // and no object shared between the worker and the relay's records.
  const parsed = PushMetaSchema.safeParse(JSON.parse(JSON.stringify(meta)));
  if (!parsed.success)
    throw new ImagineError('INVALID_PUSH', `meta: ${describeIssues(parsed.error)}`);
  const checked = parsed.data;
  const list = images === undefined ? [] : Buffer.isBuffer(images) ? [images] : images;
  // Multipart: each part says what it is.
  if (preview && list.length > 0)
    return checkedParts(
      checked,
      list.map((image) => [image]),
      [preview],
    );
  // application/octet-stream: the body holds the parts, and the meta says what they are.
  const parts = preview ? [preview] : list;
  if (checked.status === 'generating' && checked.preview !== undefined) {
    if (parts.length !== 1)
      throw new ImagineError('INVALID_PUSH', 'a progress report carries one preview part');
    return checkedParts(checked, [], [parts[0]!]);
  }
  return checkedParts(
    checked,
    parts.map((part) => [part]),
    undefined,
  );
}

/** Whether the relay answers this failure over HTTP with a status the push client retries. */
function isTransient(err: unknown): boolean {
  if (!(err instanceof ImagineError)) return true;
  return err.statusCode >= 500 || err.statusCode === 429;
}

/** A pusher that hands pushes to `app`, the relay running in this process. */
export function createInProcessPusher(
  app: FastifyInstance,
  opts: InProcessPusherOptions = {},
): RelayPusher {
  const attempts = opts.attempts ?? PUSH_ATTEMPTS;
  return {
    async push(meta, images, pushOpts = {}) {
      const { signal } = pushOpts;
      signal?.throwIfAborted();
      const tries = pushOpts.attempts ?? attempts;
      return retryPush(tries, signal, 'the relay could not take the push', async () => {
        try {
          const push = parsedPush(meta, images, pushOpts.preview);
          const answer = await acceptPush(app.relay, push, app.log);
          return { duplicate: answer.duplicate };
        } catch (err) {
          // A refusal (a 4xx over HTTP) is final: the caller tells the user instead.
          if (err instanceof ImagineError && !isTransient(err)) throw new PushRefused(err);
          if (!(err instanceof ImagineError))
            app.log.error({ err, jobId: meta.jobId }, 'unhandled error in an in-process push');
          throw err;
        }
      });
    },
  };
}
