/**
 * The input image fetcher's SSRF defences, against real loopback servers: an allow-listed image
 * host, another host, redirects, sizes, bodies that are not images, http, the relay's own
 * signed links and Slack's files.info → url_private with the bot token.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRetryable } from '../../contracts/errors.ts';
import { INPUT_PATH, signInputToken } from '../../contracts/input-url.ts';
import { createInputFetcher, type InputFetcherOptions } from '../../worker/input-fetcher.ts';
import { pngOf } from '../helpers/images.ts';
import { freePort } from '../helpers/net.ts';

const secret = 'input-fetcher-test-secret-0123456789abcdef';
const slackToken = 'xoxb-test-token';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
async function serve(handler: Handler): Promise<{ server: Server; base: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

describe('input image fetcher', () => {
  let png: Buffer;
  let cdn: Awaited<ReturnType<typeof serve>>;
  let elsewhere: Awaited<ReturnType<typeof serve>>;
  let relay: Awaited<ReturnType<typeof serve>>;
  let slack: Awaited<ReturnType<typeof serve>>;
  let options: InputFetcherOptions;
  const signal = () => AbortSignal.timeout(5000);

  beforeAll(async () => {
    png = await pngOf(40, 30);
    elsewhere = await serve((_req, res) =>
      res.writeHead(200, { 'content-type': 'image/png' }).end(png),
    );
    cdn = await serve((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/ok.png') return res.writeHead(200, { 'content-type': 'image/png' }).end(png);
      if (path === '/text')
        return res.writeHead(200, { 'content-type': 'image/png' }).end('<html>hi</html>');
      if (path === '/corrupt.png') return res.writeHead(200).end(png.subarray(0, 40));
      if (path === '/big-declared')
        return res.writeHead(200, { 'content-length': '999999' }).end(Buffer.alloc(999999));
      if (path === '/big-streamed') {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.write(png);
        res.end(Buffer.alloc(200_000));
        return;
      }
      if (path === '/to-elsewhere')
        return res.writeHead(302, { location: `${elsewhere.base}/x.png` }).end();
      if (path === '/to-self') return res.writeHead(301, { location: '/ok.png' }).end();
      if (path === '/gone') return res.writeHead(404).end();
      if (path === '/down') return res.writeHead(503).end();
      if (path === '/files-pri/T1-F1/cat.png') {
        if (req.headers.authorization !== `Bearer ${slackToken}`)
          return res.writeHead(302, { location: 'https://slack.com/signin' }).end();
        return res.writeHead(200, { 'content-type': 'image/png' }).end(png);
      }
      res.writeHead(404).end();
    });
    relay = await serve((req, res) => {
      if (req.url?.startsWith(INPUT_PATH))
        return res.writeHead(200, { 'content-type': 'image/png' }).end(png);
      res.writeHead(404).end();
    });
    slack = await serve((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.headers.authorization !== `Bearer ${slackToken}`)
        return res.end(JSON.stringify({ ok: false, error: 'invalid_auth' }));
      if (url.pathname !== '/api/files.info' || url.searchParams.get('file') !== 'F0CAT')
        return res.end(JSON.stringify({ ok: false, error: 'file_not_found' }));
      res.end(
        JSON.stringify({
          ok: true,
          file: { id: 'F0CAT', url_private: `${cdn.base}/files-pri/T1-F1/cat.png` },
        }),
      );
    });
    options = {
      relayUrl: relay.base,
      hosts: [new URL(cdn.base).host],
      allowHttp: true,
      secret,
      maxBytes: 100_000,
      timeoutMs: 3000,
      slackApiUrl: `${slack.base}/api/`,
      slackBotToken: slackToken,
    };
  });
  afterAll(async () => {
    for (const s of [cdn, elsewhere, relay, slack]) s?.server.close();
  });

  const fetchUrl = (url: string, opts: Partial<InputFetcherOptions> = {}) =>
    createInputFetcher({ ...options, ...opts })({ kind: 'url', url }, { signal: signal() });
  const failure = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      return {
        code: (err as { code?: string }).code,
        retryable: isRetryable(err),
        message: String(err),
      };
    }
    throw new Error('expected a refusal');
  };

  it('fetches an image from an allowed host, with its decoded size', async () => {
    const got = await fetchUrl(`${cdn.base}/ok.png`);
    expect(got).toMatchObject({ contentType: 'image/png', width: 40, height: 30 });
    expect(got.bytes.equals(png)).toBe(true);
  });

  it('refuses another host without contacting it', async () => {
    const before = elsewhere.hits.length;
    expect(await failure(fetchUrl(`${elsewhere.base}/x.png`))).toMatchObject({
      code: 'INPUT_NOT_ALLOWED',
      retryable: false,
    });
    expect(await failure(fetchUrl('http://169.254.169.254/latest/meta-data/'))).toMatchObject({
      code: 'INPUT_NOT_ALLOWED',
    });
    expect(elsewhere.hits.length).toBe(before);
  });

  it('refuses a redirect to another host (not followed) and follows one on the same host', async () => {
    const before = elsewhere.hits.length;
    expect(await failure(fetchUrl(`${cdn.base}/to-elsewhere`))).toMatchObject({
      code: 'INPUT_REDIRECT',
      retryable: false,
    });
    expect(elsewhere.hits.length).toBe(before);
    expect((await fetchUrl(`${cdn.base}/to-self`)).bytes.equals(png)).toBe(true);
  });

  it('refuses an image over the byte cap, declared or streamed', async () => {
    for (const path of ['/big-declared', '/big-streamed'])
      expect(await failure(fetchUrl(`${cdn.base}${path}`))).toMatchObject({
        code: 'INPUT_TOO_LARGE',
        retryable: false,
      });
  });

  it('refuses what is not an image, whatever its content type says, and a corrupt PNG', async () => {
    expect(await failure(fetchUrl(`${cdn.base}/text`))).toMatchObject({ code: 'INPUT_NOT_IMAGE' });
    expect(await failure(fetchUrl(`${cdn.base}/corrupt.png`))).toMatchObject({
      code: 'INPUT_NOT_IMAGE',
      retryable: false,
    });
  });

  it('refuses http unless configured for tests, and other schemes always', async () => {
    expect(await failure(fetchUrl(`${cdn.base}/ok.png`, { allowHttp: false }))).toMatchObject({
      code: 'INPUT_INSECURE',
      retryable: false,
    });
    expect(await failure(fetchUrl('file:///etc/passwd'))).toMatchObject({ code: 'INPUT_INSECURE' });
  });

  it('a 5xx or an unreachable host is retryable; a 404 is not', async () => {
    expect(await failure(fetchUrl(`${cdn.base}/down`))).toMatchObject({
      code: 'INPUT_UNAVAILABLE',
      retryable: true,
    });
    const closed = await freePort();
    expect(
      await failure(
        fetchUrl(`http://127.0.0.1:${closed}/x.png`, { hosts: [`127.0.0.1:${closed}`] }),
      ),
    ).toMatchObject({ code: 'INPUT_UNAVAILABLE', retryable: true });
    expect(await failure(fetchUrl(`${cdn.base}/gone`))).toMatchObject({
      code: 'INPUT_NOT_FOUND',
      retryable: false,
    });
  });

  it("fetches the relay's own signed link from RELAY_URL whatever host it names; an expired or forged one is refused", async () => {
    const token = signInputToken(
      secret,
      { kind: 'upload', id: 'u'.repeat(20) },
      Date.now() + 60_000,
    );
    const before = elsewhere.hits.length;
    const got = await fetchUrl(`https://imagine.example.com${INPUT_PATH}${token}`);
    expect(got.bytes.equals(png)).toBe(true);
    expect(relay.hits.at(-1)).toBe(`${INPUT_PATH}${token}`);
    expect(elsewhere.hits.length).toBe(before);
    const expired = signInputToken(
      secret,
      { kind: 'upload', id: 'u'.repeat(20) },
      Date.now() - 1000,
    );
    expect(
      await failure(fetchUrl(`https://imagine.example.com${INPUT_PATH}${expired}`)),
    ).toMatchObject({
      code: 'INPUT_EXPIRED',
    });
    const forged = signInputToken(
      'another-secret-another-secret-another',
      { kind: 'upload', id: 'u'.repeat(20) },
      Date.now() + 60_000,
    );
    expect(
      await failure(fetchUrl(`https://imagine.example.com${INPUT_PATH}${forged}`)),
    ).toMatchObject({
      code: 'INPUT_NOT_ALLOWED',
    });
  });

  it('resolves a Slack file with files.info and the bot token, and fetches url_private with it', async () => {
    const fetcher = createInputFetcher(options);
    const got = await fetcher({ kind: 'slack-file', fileId: 'F0CAT' }, { signal: signal() });
    expect(got.bytes.equals(png)).toBe(true);
    expect(
      await failure(
        createInputFetcher({ ...options, slackBotToken: 'xoxb-wrong' })(
          { kind: 'slack-file', fileId: 'F0CAT' },
          { signal: signal() },
        ),
      ),
    ).toMatchObject({ code: 'INPUT_NOT_FOUND', retryable: false });
    expect(
      await failure(fetcher({ kind: 'slack-file', fileId: 'F0NONE' }, { signal: signal() })),
    ).toMatchObject({ code: 'INPUT_NOT_FOUND' });
    expect(
      await failure(
        createInputFetcher({ ...options, slackBotToken: undefined })(
          { kind: 'slack-file', fileId: 'F0CAT' },
          { signal: signal() },
        ),
      ),
    ).toMatchObject({ code: 'INPUT_NOT_ALLOWED' });
  });
});
