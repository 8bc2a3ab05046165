import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../../contracts/config.ts';
import { ImagineError } from '../../contracts/errors.ts';
import type { Job } from '../../contracts/job.ts';
import { buildRelay } from '../../relay/app.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';

const json = (body: unknown) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

describe('relay HTTP API: every bad input gets a coded 4xx', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    // No worker: jobs stay queued, so "not ready" can be observed.
    app = await startTestImagine({}, { role: 'relay' });
  });
  afterAll(async () => {
    await app?.stop();
  });

  it.each<[string, RequestInit, number, string]>([
    ['malformed JSON', json('{"prompt": '), 400, 'INVALID_JSON'],
    [
      'an empty body',
      { method: 'POST', headers: { 'content-type': 'application/json' } },
      400,
      'INVALID_JSON',
    ],
    ['a JSON array', json([1, 2]), 400, 'BAD_REQUEST'],
    ['a JSON string', json('"a fox"'), 400, 'BAD_REQUEST'],
    ['no prompt', json({}), 400, 'INVALID_PROMPT'],
    ['a numeric prompt', json({ prompt: 5 }), 400, 'INVALID_PROMPT'],
    ['an empty prompt', json({ prompt: '' }), 400, 'INVALID_PROMPT'],
    ['a whitespace prompt', json({ prompt: ' \n\t ' }), 400, 'INVALID_PROMPT'],
    ['a 1001-character prompt', json({ prompt: 'a'.repeat(1001) }), 400, 'INVALID_PROMPT'],
    ['control characters', json({ prompt: 'a fox\u0007 in space' }), 400, 'INVALID_PROMPT'],
    ['bidi overrides', json({ prompt: 'a fox \u202e in space' }), 400, 'INVALID_PROMPT'],
    ['a negative seed', json({ prompt: 'fox', seed: -1 }), 400, 'INVALID_PARAMETERS'],
    ['a fractional seed', json({ prompt: 'fox', seed: 1.5 }), 400, 'INVALID_PARAMETERS'],
    ['a huge seed', json({ prompt: 'fox', seed: 2 ** 40 }), 400, 'INVALID_PARAMETERS'],
    ['a string seed', json({ prompt: 'fox', seed: '12' }), 400, 'INVALID_PARAMETERS'],
    ['an unknown aspect', json({ prompt: 'fox', aspect: '5:1' }), 400, 'INVALID_PARAMETERS'],
    ['an unknown field', json({ prompt: 'fox', model: 'sdxl' }), 400, 'INVALID_PARAMETERS'],
    ['width without height', json({ prompt: 'fox', width: 512 }), 400, 'INVALID_PARAMETERS'],
    [
      'a width off the grid',
      json({ prompt: 'fox', width: 500, height: 512 }),
      400,
      'INVALID_PARAMETERS',
    ],
    ['a body over 64 KiB', json({ prompt: 'x'.repeat(70_000) }), 413, 'PAYLOAD_TOO_LARGE'],
    [
      'a form body',
      { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'prompt=fox' },
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
  ])('POST /enqueue with %s', async (_name, init, status, code) => {
    const before = app.relay!.relay.tracker.size;
    const res = await fetch(`${app.url}/enqueue`, init);
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message.length).toBeGreaterThan(0);
    expect(app.relay!.relay.tracker.size).toBe(before);
  });

  it('counts a 1000-character prompt of emoji by characters, and accepts it', async () => {
    const res = await fetch(`${app.url}/enqueue`, json({ prompt: '🦊'.repeat(1000) }));
    expect(res.status).toBe(202);
  });

  it('reports queue position, and polling says not ready while queued', async () => {
    const a = (await (await fetch(`${app.url}/enqueue`, json({ prompt: 'first' }))).json()) as {
      jobId: string;
    };
    const b = (await (await fetch(`${app.url}/enqueue`, json({ prompt: 'second' }))).json()) as {
      jobId: string;
      position: number;
    };
    const stateA = (await (await fetch(`${app.url}/jobs/${a.jobId}`)).json()) as {
      position: number;
    };
    expect(b.position).toBe(stateA.position + 1);
    const image = await fetch(`${app.url}/jobs/${b.jobId}/image`);
    expect(image.status).toBe(409);
    expect(((await image.json()) as { error: { code: string } }).error.code).toBe('NOT_READY');
  });

  it.each([
    ['/jobs/not-a-job-id!', 400, 'INVALID_JOB_ID'],
    ['/jobs/AAAAAAAAAAAAAAAAAAAAAAAA', 404, 'JOB_NOT_FOUND'],
    ['/jobs/AAAAAAAAAAAAAAAAAAAAAAAA/image', 404, 'JOB_NOT_FOUND'],
    ['/nowhere', 404, 'NOT_FOUND'],
  ])('GET %s', async (path, status, code) => {
    const res = await fetch(`${app.url}${path}`);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it.each([
    ['/ws', 400],
    ['/ws?jobId=bad', 400],
    ['/ws?jobId=AAAAAAAAAAAAAAAAAAAAAAAA', 404],
  ])('refuses a WebSocket upgrade to %s with HTTP %i', async (path, status) => {
    const got = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(`${app.url.replace('http', 'ws')}${path}`);
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      socket.on('open', () => reject(new Error('upgrade should have been refused')));
      socket.on('error', () => {});
    });
    expect(got).toBe(status);
  });

  it('serves health and metrics', async () => {
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({
      ok: true,
      generator: 'demo',
      demo: true,
      queue: 'embedded-sqs',
    });
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    for (const name of [
      'imagine_jobs_total',
      'imagine_job_end_to_end_seconds',
      'imagine_generation_seconds',
      'imagine_websockets_open',
      'imagine_buffered_image_bytes',
    ])
      expect(metrics).toContain(name);
  });
});

describe('no job is half-created', () => {
  it('a queue that refuses the job leaves nothing behind and answers 503', async () => {
    const sent: Job[] = [];
    const relay = await buildRelay({
      config: loadConfig({ RELAY_SECRET: TEST_SECRET, LOG_LEVEL: 'silent' }),
      logger: pino({ level: 'silent' }),
      queue: {
        send: async (job) => {
          sent.push(job);
          throw new ImagineError('QUEUE_UNAVAILABLE', 'queue down');
        },
        depth: async () => undefined,
      },
    });
    try {
      const res = await relay.inject({
        method: 'POST',
        url: '/enqueue',
        payload: { prompt: 'fox' },
      });
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe('QUEUE_UNAVAILABLE');
      expect(sent).toHaveLength(1);
      expect(relay.relay.tracker.get(sent[0]!.jobId)).toBeUndefined();
      expect(relay.relay.tracker.queuedCount).toBe(0);
    } finally {
      await relay.close();
    }
  });
});

describe('WebSocket upkeep', () => {
  it('pings waiting sockets and closes idle ones', async () => {
    const app = await startTestImagine(
      { WS_HEARTBEAT_SECONDS: '1', WS_IDLE_SECONDS: '2' },
      { role: 'relay' },
    );
    try {
      const res = await fetch(`${app.url}/enqueue`, json({ prompt: 'nobody will make this' }));
      const { ws } = (await res.json()) as { ws: string };
      const socket = new WebSocket(ws);
      let pings = 0;
      socket.on('ping', () => pings++);
      const closed = await new Promise<number>((resolve) =>
        socket.on('close', (code) => resolve(code)),
      );
      expect(closed).toBe(1001);
      expect(pings).toBeGreaterThanOrEqual(1);
      await vi.waitFor(() => expect(app.relay!.relay.hub.openSockets).toBe(0));
    } finally {
      await app.stop();
    }
  });
});
