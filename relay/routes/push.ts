/**
 * `POST /push`: signed results and status changes from workers. Multipart (`meta` JSON part +
 * `image` file part) or, for workers written against the seed, JSON with a base64 image.
 * The signature covers the raw body, so the body is buffered (up to the limit) and verified
 * before anything is parsed.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { ImagineError } from '../../contracts/errors.ts';
import { sniffImageType } from '../../contracts/image-types.ts';
import { describeIssues } from '../../contracts/job.ts';
import {
  LegacyPushSchema,
  type PushMeta,
  PushMetaSchema,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifyPush,
} from '../../contracts/push.ts';

interface ParsedPush {
  meta: PushMeta;
  image?: Buffer;
  legacy: boolean;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function parseMultipart(body: Buffer, contentType: string): Promise<ParsedPush> {
  let form: FormData;
  try {
    form = await new Response(body as Uint8Array<ArrayBuffer>, {
      headers: { 'content-type': contentType },
    }).formData();
  } catch (err) {
    throw new ImagineError('INVALID_PUSH', 'body is not valid multipart/form-data', { cause: err });
  }
  const metaPart = form.get('meta');
  if (metaPart === null)
    throw new ImagineError('INVALID_PUSH', 'multipart body needs a "meta" part');
  const metaText = typeof metaPart === 'string' ? metaPart : await metaPart.text();
  let metaJson: unknown;
  try {
    metaJson = JSON.parse(metaText);
  } catch (err) {
    throw new ImagineError('INVALID_PUSH', '"meta" part is not JSON', { cause: err });
  }
  const meta = PushMetaSchema.safeParse(metaJson);
  if (!meta.success) throw new ImagineError('INVALID_PUSH', `meta: ${describeIssues(meta.error)}`);
  const imagePart = form.get('image');
  if (imagePart !== null && typeof imagePart === 'string')
    throw new ImagineError('INVALID_PUSH', '"image" must be a file part');
  return {
    meta: meta.data,
    ...(imagePart ? { image: Buffer.from(await imagePart.arrayBuffer()) } : {}),
    legacy: false,
  };
}

function parseLegacy(body: Buffer): ParsedPush {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ImagineError('INVALID_JSON', 'body is not valid JSON', { cause: err });
  }
  const parsed = LegacyPushSchema.safeParse(json);
  if (!parsed.success) throw new ImagineError('INVALID_PUSH', describeIssues(parsed.error));
  const image = Buffer.from(parsed.data.image, 'base64');
  return { meta: { jobId: parsed.data.job_id, status: 'done' }, image, legacy: true };
}

export const pushRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const maxImage = relay.config.PUSH_MAX_BYTES;
  // Room for the meta part and multipart framing, or base64's 4/3 growth.
  const bodyLimit = Math.ceil((maxImage * 4) / 3) + 64 * 1024;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    ['multipart/form-data', 'application/json'],
    { parseAs: 'buffer', bodyLimit },
    (_request, body, done) => done(null, body),
  );

  app.post('/push', { bodyLimit }, async (request, reply) => {
    const body = request.body as Buffer;
    try {
      verifyPush(
        relay.config.RELAY_SECRET,
        body,
        header(request, TIMESTAMP_HEADER),
        header(request, SIGNATURE_HEADER),
      );
    } catch (err) {
      relay.metrics.pushes.inc({ kind: 'rejected' });
      throw err;
    }
    const contentType = header(request, 'content-type') ?? '';
    const push = contentType.startsWith('multipart/form-data')
      ? await parseMultipart(body, contentType)
      : parseLegacy(body);
    const { meta } = push;

    let image: { bytes: Buffer; contentType: string } | undefined;
    if (meta.status === 'done') {
      if (!push.image || push.image.length === 0)
        throw new ImagineError('INVALID_PUSH', 'a "done" push needs a non-empty image');
      if (push.image.length > maxImage)
        throw new ImagineError(
          'PAYLOAD_TOO_LARGE',
          `image is ${push.image.length} bytes; the limit is ${maxImage}`,
        );
      const sniffed = sniffImageType(push.image);
      if (!sniffed) throw new ImagineError('INVALID_PUSH', 'image is not PNG, JPEG or WebP');
      if (meta.contentType && meta.contentType !== sniffed)
        throw new ImagineError(
          'INVALID_PUSH',
          `meta says ${meta.contentType} but the bytes are ${sniffed}`,
        );
      image = { bytes: push.image, contentType: sniffed };
    } else if (push.image) {
      throw new ImagineError('INVALID_PUSH', `a "${meta.status}" push carries no image`);
    }

    const { duplicate, record } = relay.tracker.apply(
      meta.jobId,
      {
        state: meta.status,
        seed: meta.seed,
        width: meta.width,
        height: meta.height,
        prompt: meta.prompt,
        generator: meta.generator,
        generationMs: meta.generationMs,
        createdAt: meta.createdAt,
        replyTarget: meta.replyTarget,
        error: meta.error,
      },
      image,
    );
    request.log.info(
      { jobId: meta.jobId, status: meta.status, duplicate, legacy: push.legacy },
      'push',
    );
    relay.metrics.pushes.inc({
      kind: duplicate ? 'duplicate' : push.legacy ? 'legacy' : image ? 'image' : 'status',
    });
    if (!duplicate && meta.status === 'done') {
      relay.metrics.endToEnd.observe(
        { platform: record.platform ?? 'unknown' },
        Math.max(0, (Date.now() - record.createdAt) / 1000),
      );
      if (meta.generationMs !== undefined)
        relay.metrics.generation.observe(meta.generationMs / 1000);
    }
    return reply.status(200).send({ ok: true, jobId: meta.jobId, state: record.state, duplicate });
  });
};
