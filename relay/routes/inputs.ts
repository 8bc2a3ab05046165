/**
 * Input images for vary and upscale from the web page:
 * - `POST /uploads` (body: the image, `content-type: image/png|jpeg|webp`) keeps it in memory
 *   and answers a short-lived signed link to it;
 * - `POST /jobs/:jobId/image-link?i=N` answers a signed link to image N of a result still in
 *   the buffer;
 * - `GET /inputs/<token>` serves either (the worker fetches it; the token is the capability).
 */
import type { FastifyPluginAsync } from 'fastify';
import { ImagineError } from '../../contracts/errors.ts';
import { checkInputImage } from '../../contracts/image-check.ts';
import { INPUT_PATH, openInputToken, signInputToken } from '../../contracts/input-url.ts';
import { UploadStore } from '../uploads.ts';
import { publicBase } from './enqueue.ts';
import { findJob, lookupJob } from './jobs.ts';

const IMAGE_BODY = /^image\/(png|jpeg|webp)\b/i;

export const inputRoutes: FastifyPluginAsync = async (app) => {
  const { relay } = app;
  const ttlMs = relay.config.UPLOAD_TTL_SECONDS * 1000;
  const maxBytes = relay.config.INPUT_IMAGE_MAX_BYTES;
  const uploads = new UploadStore({ ttlMs, maxBytes: relay.config.UPLOAD_BUFFER_BYTES });
  const sweeper = setInterval(() => uploads.sweep(), 10_000);
  sweeper.unref();
  app.addHook('onClose', async () => clearInterval(sweeper));
  const secret = relay.config.RELAY_SECRET;

  app.addContentTypeParser(
    IMAGE_BODY,
    { parseAs: 'buffer', bodyLimit: maxBytes },
    (_req, body, done) => done(null, body),
  );

  const link = (request: Parameters<typeof publicBase>[0], token: string) =>
    new URL(INPUT_PATH + token, publicBase(request, relay.config.PUBLIC_URL)).toString();

  app.post('/uploads', { bodyLimit: maxBytes }, async (request, reply) => {
    if (!IMAGE_BODY.test(request.headers['content-type'] ?? ''))
      throw new ImagineError(
        'UNSUPPORTED_MEDIA_TYPE',
        'send the image itself with content-type image/png, image/jpeg or image/webp',
      );
    const body = request.body;
    if (!Buffer.isBuffer(body) || body.length === 0)
      throw new ImagineError('BAD_REQUEST', 'the upload is empty');
    const image = await checkInputImage(body);
    const kept = uploads.put(image);
    if (!kept)
      throw new ImagineError(
        'PAYLOAD_TOO_LARGE',
        'the upload does not fit in memory; try a smaller image',
      );
    const token = signInputToken(secret, { kind: 'upload', id: kept.id }, kept.expiresAt);
    return reply.status(201).send({
      url: link(request, token),
      expiresAt: kept.expiresAt,
      contentType: image.contentType,
      width: image.width,
      height: image.height,
    });
  });

  app.post<{ Params: { jobId: string }; Querystring: { i?: string } }>(
    '/jobs/:jobId/image-link',
    async (request) => {
      const raw = request.query.i ?? '0';
      if (!/^[0-3]$/.test(raw))
        throw new ImagineError('BAD_REQUEST', 'i must be an image index, 0 to 3');
      const i = Number(raw);
      const record = await findJob((id) => lookupJob(relay, id), request.params.jobId);
      const image = record.images?.[i];
      // A job that ended without images will never have one: say which end, not "not ready".
      if (record.state === 'cancelled')
        throw new ImagineError('JOB_CANCELLED', 'the job was cancelled; it made no image');
      if (record.state === 'failed')
        throw new ImagineError('JOB_FAILED', record.error?.message ?? 'the job failed');
      if (record.state !== 'done' || !record.images)
        throw new ImagineError(
          record.state === 'done' || record.state === 'expired' ? 'JOB_EXPIRED' : 'NOT_READY',
          'the image is not in memory here; send your own copy to POST /uploads',
        );
      if (!image)
        throw new ImagineError('NOT_FOUND', `the job made ${record.images.length} images`);
      const expiresAt = Date.now() + ttlMs;
      const token = signInputToken(secret, { kind: 'result', id: record.jobId, i }, expiresAt);
      return { url: link(request, token), expiresAt };
    },
  );

  // A wildcard, not `:token`: tokens are longer than the router's 100-character parameters.
  app.get<{ Params: { '*': string } }>('/inputs/*', async (request, reply) => {
    const { target } = openInputToken(secret, request.params['*']);
    let bytes: Buffer | undefined;
    let contentType: string | undefined;
    if (target.kind === 'upload') {
      const upload = uploads.get(target.id);
      bytes = upload?.bytes;
      contentType = upload?.contentType;
    } else {
      const image = relay.tracker.get(target.id)?.images?.[target.i];
      bytes = image?.bytes;
      contentType = image?.contentType;
    }
    if (!bytes || !contentType)
      throw new ImagineError('INPUT_EXPIRED', 'that image is no longer held here; send it again');
    return reply
      .header('content-type', contentType)
      .header('cache-control', 'private, no-store')
      .header('x-content-type-options', 'nosniff')
      .send(bytes);
  });
};
