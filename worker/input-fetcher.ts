/**
 * Fetches a job's input image at job time, with SSRF defences: the relay's own signed URLs are
 * fetched from the relay the worker pushes to; anything else only from allow-listed hosts
 * (Discord's CDN, files.slack.com; configurable), https only unless allowed for tests, no
 * redirect off the list (and none at all while a token is sent), a byte cap, magic-byte
 * sniffing and a decode check with sharp. Slack files are resolved with `files.info` →
 * `url_private` and the bot token. Each refusal is a coded error that is not retried; a 5xx, a
 * 429 or a connection failure is `INPUT_UNAVAILABLE`, which is.
 */
import { ImagineError } from '../contracts/errors.ts';
import { type CheckedImage, checkInputImage } from '../contracts/image-check.ts';
import {
  checkInputUrl,
  hostAllowed,
  INPUT_PATH,
  type InputUrlPolicy,
} from '../contracts/input-url.ts';
import type { ImageRef } from '../contracts/job.ts';

/** Redirects followed (each to an allowed host, without credentials). */
const MAX_REDIRECTS = 3;

/** A fetched, checked input image. */
export type FetchedInput = CheckedImage;

/** Options of {@link createInputFetcher}. */
export interface InputFetcherOptions extends InputUrlPolicy {
  /** The relay the worker pushes to (RELAY_URL): where `/inputs/<token>` URLs are fetched. */
  relayUrl: string;
  maxBytes: number;
  timeoutMs: number;
  /** Slack Web API base (SLACK_API_URL) and bot token, for `slack-file` references. */
  slackApiUrl?: string | undefined;
  slackBotToken?: string | undefined;
  fetch?: typeof fetch;
}

/** Fetches input images. */
export type InputFetcher = (ref: ImageRef, opts: { signal: AbortSignal }) => Promise<FetchedInput>;

/** Build the input fetcher. */
export function createInputFetcher(opts: InputFetcherOptions): InputFetcher {
  const doFetch = opts.fetch ?? fetch;

  const get = async (
    url: URL,
    signal: AbortSignal,
    headers: Record<string, string>,
    trusted: boolean,
  ): Promise<Buffer> => {
    let current = url;
    for (let hop = 0; ; hop++) {
      let response: Response;
      try {
        response = await doFetch(current, {
          headers: { accept: 'image/png, image/jpeg, image/webp', ...headers },
          redirect: 'manual',
          signal,
        });
      } catch (err) {
        if (
          signal.aborted &&
          !(signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError')
        )
          throw err;
        throw new ImagineError(
          'INPUT_UNAVAILABLE',
          `the input image host (${current.host}) cannot be reached`,
          {
            cause: err,
          },
        );
      }
      if (response.status >= 300 && response.status < 400) {
        await response.body?.cancel().catch(() => {});
        const location = response.headers.get('location');
        let next: URL | undefined;
        try {
          next = location ? new URL(location, current) : undefined;
        } catch {
          next = undefined;
        }
        // A redirect is followed only to an allowed host, never with a token, a few times.
        const ok =
          next &&
          !trusted &&
          Object.keys(headers).length === 0 &&
          hop < MAX_REDIRECTS &&
          (next.protocol === 'https:' || (opts.allowHttp && next.protocol === 'http:')) &&
          hostAllowed(next, opts.hosts);
        if (!ok || !next)
          throw new ImagineError(
            'INPUT_REDIRECT',
            `the input image URL redirects elsewhere (${next ? next.host : 'no location'}); not followed`,
          );
        current = next;
        continue;
      }
      if (response.status === 429 || response.status >= 500) {
        await response.body?.cancel().catch(() => {});
        throw new ImagineError(
          'INPUT_UNAVAILABLE',
          `the input image host answered HTTP ${response.status}`,
        );
      }
      if (response.status === 410) {
        await response.body?.cancel().catch(() => {});
        throw new ImagineError(
          'INPUT_EXPIRED',
          'the link to the input image has expired; send it again',
        );
      }
      if (!response.ok) {
        await response.body?.cancel().catch(() => {});
        throw new ImagineError(
          'INPUT_NOT_FOUND',
          `the input image is not there any more (HTTP ${response.status}); it may have been deleted`,
        );
      }
      return readCapped(response, opts.maxBytes);
    }
  };

  const resolveSlack = async (fileId: string, signal: AbortSignal): Promise<URL> => {
    if (!opts.slackBotToken)
      throw new ImagineError('INPUT_NOT_ALLOWED', 'Slack files need SLACK_BOT_TOKEN on the worker');
    const api = new URL('files.info', opts.slackApiUrl ?? 'https://slack.com/api/');
    api.searchParams.set('file', fileId);
    let body: { ok?: boolean; error?: string; file?: { url_private?: string } };
    try {
      const response = await doFetch(api, {
        headers: { authorization: `Bearer ${opts.slackBotToken}` },
        redirect: 'manual',
        signal,
      });
      if (response.status === 429 || response.status >= 500)
        throw new ImagineError(
          'INPUT_UNAVAILABLE',
          `Slack files.info answered HTTP ${response.status}`,
        );
      body = (await response.json()) as typeof body;
    } catch (err) {
      if (err instanceof ImagineError) throw err;
      throw new ImagineError('INPUT_UNAVAILABLE', 'Slack cannot be reached for the input file', {
        cause: err,
      });
    }
    if (!body.ok)
      throw new ImagineError(
        body.error === 'ratelimited' ? 'INPUT_UNAVAILABLE' : 'INPUT_NOT_FOUND',
        `Slack cannot give the input file (${body.error ?? 'no reason'})`,
      );
    const raw = body.file?.url_private;
    if (!raw) throw new ImagineError('INPUT_NOT_FOUND', 'the Slack file has no downloadable image');
    const checked = checkInputUrl(raw, opts);
    if (checked.kind !== 'external')
      throw new ImagineError('INPUT_NOT_ALLOWED', 'the Slack file URL is not on files.slack.com');
    return checked.url;
  };

  return async (ref, { signal }) => {
    const timeout = AbortSignal.timeout(opts.timeoutMs);
    const combined = AbortSignal.any([signal, timeout]);
    let bytes: Buffer;
    try {
      if (ref.kind === 'slack-file') {
        const url = await resolveSlack(ref.fileId, combined);
        bytes = await get(url, combined, { authorization: `Bearer ${opts.slackBotToken}` }, false);
      } else {
        const checked = checkInputUrl(ref.url, opts);
        bytes =
          checked.kind === 'relay'
            ? await get(new URL(INPUT_PATH + checked.token, opts.relayUrl), combined, {}, true)
            : await get(checked.url, combined, {}, false);
      }
    } catch (err) {
      if (timeout.aborted && !(err instanceof ImagineError))
        throw new ImagineError(
          'INPUT_UNAVAILABLE',
          `the input image did not arrive within ${opts.timeoutMs} ms`,
          {
            cause: err,
          },
        );
      throw err;
    }
    return checkInputImage(bytes);
  };
}

async function readCapped(response: Response, maxBytes: number): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw new ImagineError(
      'INPUT_TOO_LARGE',
      `the input image is ${declared} bytes; the limit is ${maxBytes}`,
    );
  }
  if (!response.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body) {
    total += chunk.length;
    if (total > maxBytes) {
      await response.body.cancel().catch(() => {});
      throw new ImagineError(
        'INPUT_TOO_LARGE',
        `the input image is over the ${maxBytes}-byte limit`,
      );
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks, total);
}
