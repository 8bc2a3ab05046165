/**
 * A Bolt receiver on the relay's own Fastify server: `POST /slack/events` takes slash
 * commands, interactivity and Events API requests. The raw body is kept for Bolt's
 * `verifySlackRequest` (HMAC over `v0:{ts}:{body}`, stale after 5 minutes); a bad, missing or
 * stale signature is a 401 before anything is parsed. The HTTP response is sent when the
 * listener acks, so Slack's 3-second window depends only on the ack.
 */
import {
  type App,
  type Receiver,
  type ReceiverEvent,
  ReceiverMultipleAckError,
  verifySlackRequest,
} from '@slack/bolt';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ImagineError } from '../../contracts/errors.ts';
import { header } from '../../contracts/headers.ts';
import type { FrontDoor } from '../../submit/front-door.ts';
import { checkSlackBody } from './payloads.ts';

/** Slack's replay window, both ways. */
const MAX_SKEW_SECONDS = 5 * 60;
/**
 * How long a listener may take to ack before the request is answered for it. Slack gives up
 * after 3 s (and retries events), so the fallback must land well inside that, network included.
 */
export const ACK_TIMEOUT_MS = 2_000;

/** Options of {@link FastifySlackReceiver}. */
export interface FastifySlackReceiverOptions {
  signingSecret: string;
  logger: Logger;
  /** The path of the endpoint. */
  path?: string;
  /** Time is a parameter, so signature windows are testable. */
  now?: () => number;
  /** Called with the relay when the plugin is registered on it. */
  onRelay?: (relay: FrontDoor) => void;
  /** The fallback ack's delay (tests); {@link ACK_TIMEOUT_MS} by default. */
  ackTimeoutMs?: number;
}

/** Bolt's `Receiver` whose transport is a Fastify plugin. */
export class FastifySlackReceiver implements Receiver {
  private bolt: App | undefined;
  private readonly opts: FastifySlackReceiverOptions;
  /** Register this on the relay. */
  readonly plugin: FastifyPluginAsync;

  constructor(opts: FastifySlackReceiverOptions) {
    this.opts = opts;
    this.plugin = async (app) => {
      opts.onRelay?.(app.frontDoor);
      // Encapsulated: these parsers keep the raw text for this route only.
      app.removeAllContentTypeParsers();
      app.addContentTypeParser(
        ['application/x-www-form-urlencoded', 'application/json'],
        { parseAs: 'string', bodyLimit: 1024 * 1024 },
        (_request, body, done) => done(null, body),
      );
      app.post(opts.path ?? '/slack/events', async (request, reply) => this.handle(request, reply));
    };
  }

  init(app: App): void {
    this.bolt = app;
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}

  /** Throws a coded 401 unless Slack signed this body within the window. */
  verify(
    rawBody: string,
    timestampHeader: string | undefined,
    signature: string | undefined,
  ): void {
    if (!timestampHeader || !signature)
      throw new ImagineError(
        'MISSING_SIGNATURE',
        'X-Slack-Signature and X-Slack-Request-Timestamp are required',
      );
    const timestamp = Number(timestampHeader);
    const nowMs = (this.opts.now ?? Date.now)();
    if (!Number.isInteger(timestamp))
      throw new ImagineError('BAD_SIGNATURE', 'X-Slack-Request-Timestamp is not a number');
    // Bolt rejects old timestamps; one from the future is a replay risk just the same.
    if (Math.abs(nowMs / 1000 - timestamp) > MAX_SKEW_SECONDS)
      throw new ImagineError('STALE_SIGNATURE', 'request timestamp is more than 5 minutes off');
    try {
      verifySlackRequest({
        signingSecret: this.opts.signingSecret,
        body: rawBody,
        headers: { 'x-slack-signature': signature, 'x-slack-request-timestamp': timestamp },
        nowMilliseconds: nowMs,
      });
    } catch (err) {
      throw new ImagineError('BAD_SIGNATURE', 'Slack signature does not match', { cause: err });
    }
  }

  private parse(rawBody: string, contentType: string): Record<string, unknown> {
    let parsed: unknown;
    try {
      if (contentType.startsWith('application/json')) parsed = JSON.parse(rawBody);
      else {
        const form = Object.fromEntries(new URLSearchParams(rawBody));
        // Interactivity arrives as one form field holding JSON.
        parsed = typeof form.payload === 'string' ? JSON.parse(form.payload) : form;
      }
    } catch (err) {
      throw new ImagineError('BAD_REQUEST', 'body is not a Slack request', { cause: err });
    }
    // Signed, parseable, but not an object (null, a list, a number): still not a Slack request.
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new ImagineError('BAD_REQUEST', 'body is not a Slack request');
    return parsed as Record<string, unknown>;
  }

  private async handle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const rawBody = typeof request.body === 'string' ? request.body : '';
    this.verify(
      rawBody,
      header(request, 'x-slack-request-timestamp'),
      header(request, 'x-slack-signature'),
    );
    const parsed = this.parse(rawBody, header(request, 'content-type') ?? '');
    if (parsed.ssl_check) return reply.status(200).send();
    if (parsed.type === 'url_verification') {
      if (typeof parsed.challenge !== 'string')
        throw new ImagineError('BAD_REQUEST', 'url_verification without a challenge');
      return reply.send({ challenge: parsed.challenge });
    }
    // Signed is not the same as well formed: a body no listener could read is a 400 here.
    const { kind, body } = checkSlackBody(parsed);
    if (kind === 'rate_limited') return reply.status(200).send();
    const bolt = this.bolt;
    if (!bolt) throw new ImagineError('NOT_READY', 'Slack app is not initialised yet');

    const retryNum = header(request, 'x-slack-retry-num');
    const retryReason = header(request, 'x-slack-retry-reason');
    return new Promise<FastifyReply>((resolve) => {
      let acked = false;
      const timer = setTimeout(() => {
        if (acked) return;
        acked = true;
        this.opts.logger.warn(
          { type: body.type, command: body.command },
          'slack request not acked in time',
        );
        resolve(reply.status(200).send());
      }, this.opts.ackTimeoutMs ?? ACK_TIMEOUT_MS);
      const event: ReceiverEvent = {
        body,
        ...(retryNum ? { retryNum: Number(retryNum) } : {}),
        ...(retryReason ? { retryReason } : {}),
        ack: async (response?: unknown) => {
          if (acked) throw new ReceiverMultipleAckError();
          acked = true;
          clearTimeout(timer);
          if (response === undefined || response === '') resolve(reply.status(200).send());
          else if (typeof response === 'string')
            resolve(reply.status(200).type('text/plain; charset=utf-8').send(response));
          else resolve(reply.status(200).send(response));
        },
      };
      bolt.processEvent(event).then(
        () => {
          if (acked) return;
          // Nothing listened: a 404 tells Slack (and a developer) the request went nowhere.
          acked = true;
          clearTimeout(timer);
          resolve(
            reply.status(404).send({
              error: { code: 'NOT_FOUND', message: 'no Slack listener for this request' },
            }),
          );
        },
        (err: unknown) => {
          this.opts.logger.error({ err }, 'slack listener failed');
          if (acked) return;
          acked = true;
          clearTimeout(timer);
          resolve(
            reply.status(500).send({ error: { code: 'INTERNAL', message: 'internal error' } }),
          );
        },
      );
    });
  }
}
