/** Shared set-up for the Slack tests: imagine wired to a fake Slack. */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { ImagineError } from '../../contracts/errors.ts';
import type { StartOptions } from '../../runtime/start.ts';
import type { AdmissionContext, AdmissionPolicy } from '../../submit/submit.ts';
import type { GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { type FakeMessage, FakeSlack } from '../fakes/slack/fake-slack.ts';
import { buttonsOf, TEST_SIGNING_SECRET } from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';

/** Env for HTTP mode against `fake`. */
export function slackHttpEnv(fake: FakeSlack): Record<string, string> {
  return {
    SLACK_BOT_TOKEN: fake.botToken,
    SLACK_SIGNING_SECRET: TEST_SIGNING_SECRET,
    SLACK_API_URL: fake.apiUrl,
  };
}

/** Start imagine in Slack HTTP mode against `fake`. */
export async function startWithSlack(
  fake: FakeSlack,
  opts: Partial<StartOptions> = {},
  env: Record<string, string> = {},
) {
  const app = await startTestImagine({ ...slackHttpEnv(fake), ...env }, opts);
  return { ...app, eventsUrl: `${app.url}/slack/events` };
}

/** The fake's url_private is a loopback http host: allow-listed for input images. */
export const inputEnv = (fake: FakeSlack) => ({
  INPUT_IMAGE_HOSTS: new URL(fake.apiUrl).host,
  INPUT_IMAGE_ALLOW_HTTP: 'true',
});

/** Admits everything except prompts with "refuse", recording each request it sees. */
export class CountingAdmission implements AdmissionPolicy {
  readonly seen: AdmissionContext[] = [];
  async admit(ctx: AdmissionContext) {
    this.seen.push(ctx);
    if (ctx.prompt.includes('refuse'))
      throw new ImagineError('RATE_LIMITED', 'image limit reached', { retryAfterSeconds: 60 });
    return { confirm: () => {}, cancel: async () => {} };
  }
  finished() {}
}

/** Action ids a result card carries (Re-roll, or Vary on a single image). */
const RESULT_ACTIONS = /^imagine_(reroll_job|vary_(strong|subtle)(_\d)?)$/;

/** Wait until the message `ts` shows the result card (creative-loop buttons on it). */
export function resultCard(fake: FakeSlack, ts: string): Promise<FakeMessage> {
  return fake.waitFor(() => {
    const m = fake.message(ts);
    return m && buttonsOf(m.blocks).some((b) => RESULT_ACTIONS.test(b.action_id)) ? m : undefined;
  });
}

/** The status messages the bot posted (not file messages), oldest first. */
export function statusMessages(fake: FakeSlack): FakeMessage[] {
  return fake.messages.filter((m) => !m.files && !m.deleted);
}

/** An image as decoded pixels: its format and size, and a digest of its RGB pixels. */
export interface DecodedImage {
  format: string | undefined;
  width: number | undefined;
  height: number | undefined;
  /** sha256 of the decoded RGB pixels (alpha dropped): equal for the same picture in any file. */
  pixels: string;
}

/** Decode `bytes` into a {@link DecodedImage}. */
export async function decoded(bytes: Buffer): Promise<DecodedImage> {
  const { format, width, height } = await sharp(bytes).metadata();
  const raw = await sharp(bytes).removeAlpha().raw().toBuffer();
  return { format, width, height, pixels: createHash('sha256').update(raw).digest('hex') };
}

/** One call a {@link RecordingGenerator} saw. */
export interface RecordedCall {
  task: string;
  seeds: number[];
  width: number;
  height: number;
  strength?: number;
  /** The input image as the generator got it (after the worker's input fetcher), decoded. */
  input?: DecodedImage;
  /** The raw input bytes, for checks that look at the picture itself. */
  inputBytes?: Buffer;
}

/** The demo generator, recording what each call was given. */
export class RecordingGenerator implements Generator {
  readonly name = 'demo';
  readonly calls: RecordedCall[] = [];
  /** When set, a call it returns an error for fails with that error (after being recorded). */
  fail: ((req: GenerateRequest) => Error | undefined) | undefined;
  private readonly demo = new DemoGenerator();
  async generate(req: GenerateRequest, opts: { signal: AbortSignal }) {
    this.calls.push({
      task: req.task,
      seeds: req.seeds,
      width: req.width,
      height: req.height,
      ...(req.input ? { input: await decoded(req.input.bytes), inputBytes: req.input.bytes } : {}),
      ...(req.strength !== undefined ? { strength: req.strength } : {}),
    });
    const failure = this.fail?.(req);
    if (failure) throw failure;
    return this.demo.generate(req, opts);
  }
}

export { FakeSlack };
