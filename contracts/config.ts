/**
 * Configuration: parsed once from the environment with a schema, frozen, passed down.
 * Bad config stops start-up with a message naming the variable and what was expected.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { BackendListSchema } from './backends.ts';
import {
  DEFAULT_SAFETY_THRESHOLD,
  SAFETY_BACKENDS,
  SAFETY_MODELS,
  SAFETY_MODES,
} from './safety.ts';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const url = z.url({ error: 'must be an absolute http(s) URL' });
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === '' ? undefined : v));

/** Every environment variable, its schema, default and meaning (README's table is made from it). */
export const ENV = {
  ROLE: {
    schema: z.enum(['all', 'relay', 'worker']).default('all'),
    default: 'all',
    doc: 'Which part runs: `all` (relay + worker in one process), `relay` or `worker`. An argument to `npm start` wins.',
  },
  HOST: {
    schema: z.string().min(1).default('0.0.0.0'),
    default: '0.0.0.0',
    doc: 'Address the relay listens on.',
  },
  PORT: { schema: int(0, 65535).default(8080), default: '8080', doc: 'Port the relay listens on.' },
  PUBLIC_URL: {
    schema: url.optional(),
    default: '(from the request; on Fly.io https://$FLY_APP_NAME.fly.dev)',
    doc: 'Public base URL of the relay, used in links it hands out, and the page’s own origin.',
  },
  RELAY_SECRET: {
    schema: z.string().min(32, 'must be at least 32 characters').optional(),
    default: '(generated per run in the embedded default)',
    doc: 'Signs worker pushes and seals chat reply targets. Required unless running on embedded defaults. Same value on relay and worker.',
  },
  RELAY_URL: {
    schema: url.optional(),
    default:
      'http://127.0.0.1:$PORT (a Fly.io worker: http://relay.process.$FLY_APP_NAME.internal:$PORT)',
    doc: 'Where the worker pushes results. Unset with `ROLE=all`: the worker hands its pushes to the relay in its own process (no HTTP).',
  },
  FLY_APP_NAME: {
    schema: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9-]{0,62}$/,
        'must be a Fly.io app name (lowercase letters, digits, `-`)',
      )
      .optional(),
    default: '(set by Fly.io)',
    doc: 'The Fly.io app this machine belongs to (Fly sets it). When PUBLIC_URL or RELAY_URL is unset, they are derived from it, so a renamed app needs no edits.',
  },
  LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    default: 'info',
    doc: 'pino log level.',
  },
  SQS_QUEUE_URL: {
    schema: url.optional(),
    default: '(embedded fauxqs)',
    doc: 'The job queue. Unset: an in-process SQS emulator (fauxqs) on a loopback port, same code path.',
  },
  SQS_DLQ_URL: {
    schema: url.optional(),
    default: "(the queue's redrive policy)",
    doc: 'Dead-letter queue for malformed jobs. Unset: read from the job queue’s RedrivePolicy.',
  },
  SQS_ENDPOINT: {
    schema: url.optional(),
    default: '(AWS)',
    doc: 'SQS endpoint override (LocalStack, fauxqs).',
  },
  AWS_REGION: {
    schema: z.string().min(1).default('us-east-1'),
    default: 'us-east-1',
    doc: 'AWS region of the queue.',
  },
  SQS_MAX_RECEIVE_COUNT: {
    schema: int(1, 1000).default(3),
    default: '3',
    doc: 'Receives before a job goes to the dead-letter queue: the embedded queue is made with it. For an existing queue the worker reads its redrive policy’s `maxReceiveCount` instead (this value only when the queue has none), so the last attempt always tells the user.',
  },
  SQS_VISIBILITY_TIMEOUT: {
    schema: int(5, 43200).default(60),
    default: '60',
    doc: 'Seconds a received job stays invisible; extended while it runs.',
  },
  SQS_WAIT_SECONDS: { schema: int(0, 20).default(20), default: '20', doc: 'Long-poll wait.' },
  // The queue backend: SQS (AWS or embedded) or BullMQ on Redis for self-hosters.
  QUEUE_BACKEND: {
    schema: z.enum(['sqs', 'bullmq']).default('sqs'),
    default: 'sqs',
    doc: '`sqs` (AWS SQS, or the embedded emulator when SQS_QUEUE_URL is unset) or `bullmq` (BullMQ on the Redis at REDIS_URL: self-hosting without AWS).',
  },
  BULLMQ_QUEUE: {
    schema: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,100}$/, 'must be 1-100 letters, digits, `_`, `.` or `-`')
      .default('imagine-jobs'),
    default: 'imagine-jobs',
    doc: 'BullMQ queue name (its keys live under REDIS_KEY_PREFIX). Same value on relay and worker.',
  },
  BULLMQ_ATTEMPTS: {
    schema: int(1, 100).default(3),
    default: '3',
    doc: 'BullMQ: attempts a job gets before it fails for good (the user is told on the last one). Same value on relay and worker.',
  },
  BULLMQ_BACKOFF_SECONDS: {
    schema: int(0, 3600).default(5),
    default: '5',
    doc: 'BullMQ: delay before the first retry of a failed attempt; doubles on each further retry.',
  },
  GENERATOR: {
    schema: z.enum(['demo', 'modal', 'http', 'a1111', 'comfyui', 'replicate']).default('demo'),
    default: 'demo',
    doc: "`demo` (built-in abstract art, not AI), `modal` (Flux on Modal), `http` (any endpoint speaking the same contract), `a1111` (AUTOMATIC1111 / Forge), `comfyui` (ComfyUI) or `replicate` (Replicate's hosted API). See README: Generators. Give a `ROLE=relay` the same `GENERATOR`/`GENERATORS` as its workers: it offers and queues upscales only as far as they go (`/healthz`'s `upscaleMaxSide`).",
  },
  MODAL_FLUX_URL: {
    schema: url.optional(),
    default: '',
    doc: 'The Modal web endpoint (`modal deploy` prints it). Required for `modal`/`http`.',
  },
  MODAL_KEY: {
    schema: optionalString,
    default: '',
    doc: 'Modal proxy-auth token id (`Modal-Key`).',
  },
  MODAL_SECRET: {
    schema: optionalString,
    default: '',
    doc: 'Modal proxy-auth token secret (`Modal-Secret`).',
  },
  GENERATOR_TIMEOUT_MS: {
    schema: int(1000, 900_000).default(180_000),
    default: '180000',
    doc: 'Abort a generation after this long (the HTTP/Modal generator sends the moment as `deadline`, so the endpoint can stop work nobody waits for).',
  },
  GENERATOR_MAX_BYTES: {
    schema: int(1024, 100 * 1024 * 1024).default(20 * 1024 * 1024),
    default: '20971520',
    doc: 'Largest image accepted from the generator.',
  },
  // Generator backends people already run (README: Generators).
  GENERATORS: {
    schema: optionalString
      .transform((v, ctx) => {
        if (v === undefined) return undefined;
        try {
          return JSON.parse(v) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be a JSON array of backends' });
          return z.NEVER;
        }
      })
      .pipe(BackendListSchema.optional()),
    default: '',
    doc: 'Several backends at once, replacing GENERATOR: a JSON array of `{"name", "type", "url", "priority", "weight", "tasks", "maxSide", "maxCount", "models", …}` (README: Several backends).',
  },
  MODELS: {
    schema: optionalString.transform((v) =>
      (v ?? '')
        .split(',')
        .map((m) => m.trim())
        .filter(Boolean),
    ),
    default: '(no choice)',
    doc: 'Comma-separated models users may choose (`model` in a request, the menu on the page); the worker sends a job naming one to a backend offering it (GENERATORS `models`) or passes it to its one backend.',
  },
  GENERATOR_FAILURES_TO_OPEN: {
    schema: int(1, 100).default(2),
    default: '2',
    doc: 'With GENERATORS: consecutive retryable failures that mark a backend unhealthy.',
  },
  GENERATOR_COOLDOWN_SECONDS: {
    schema: int(1, 3600).default(30),
    default: '30',
    doc: 'With GENERATORS: how long an unhealthy backend is skipped before one trial job.',
  },
  A1111_URL: {
    schema: url.optional(),
    default: '',
    doc: 'AUTOMATIC1111 / Forge web UI started with `--api` (`http://gpu:7860`). Required for `a1111`.',
  },
  A1111_AUTH: {
    schema: optionalString.refine((v) => v === undefined || /^[^:]+:.+$/.test(v), {
      message: 'must be user:password, as given to --api-auth',
    }),
    default: '',
    doc: '`user:password` of its `--api-auth` (HTTP basic auth).',
  },
  A1111_MODEL: {
    schema: optionalString,
    default: '(the loaded one)',
    doc: 'Checkpoint title to use (`sd_model_checkpoint`, as `/sdapi/v1/sd-models` lists it).',
  },
  A1111_SAMPLER: {
    schema: z.string().min(1).default('Euler'),
    default: 'Euler',
    doc: 'Sampler name (as `/sdapi/v1/samplers` lists it).',
  },
  A1111_SCHEDULER: {
    schema: optionalString,
    default: "(the server's)",
    doc: 'Scheduler name (A1111 1.9+ / Forge: `Simple` for Flux).',
  },
  A1111_CFG_SCALE: {
    schema: z.coerce.number().min(1).max(30).default(7),
    default: '7',
    doc: 'CFG scale (`1` for Flux schnell).',
  },
  A1111_UPSCALER: {
    schema: z.string().min(1).default('R-ESRGAN 4x+'),
    default: 'R-ESRGAN 4x+',
    doc: 'Upscaler for upscales (`/sdapi/v1/extra-single-image`), as `/sdapi/v1/upscalers` lists it.',
  },
  COMFYUI_URL: {
    schema: url.optional(),
    default: '',
    doc: 'ComfyUI server (`http://gpu:8188`). Required for `comfyui`.',
  },
  COMFYUI_AUTH: {
    schema: optionalString,
    default: '',
    doc: 'Value of an `Authorization` header for a ComfyUI behind an authenticating proxy (`Bearer …`, `Basic …`).',
  },
  COMFYUI_MODEL: {
    schema: z.string().min(1).default('flux1-schnell-fp8.safetensors'),
    default: 'flux1-schnell-fp8.safetensors',
    doc: 'Value of `{{model}}` in the workflows (the bundled ones: the checkpoint file in `models/checkpoints/`).',
  },
  COMFYUI_WORKFLOW: {
    schema: optionalString,
    default: '(bundled Flux schnell text-to-image)',
    doc: 'Path of the text-to-image workflow (API format, with `{{prompt}}`, `{{seed}}`, … placeholders).',
  },
  COMFYUI_VARY_WORKFLOW: {
    schema: optionalString,
    default: '(bundled Flux schnell image-to-image)',
    doc: 'Path of the image-to-image workflow for vary (needs `{{image}}` and `{{strength}}`).',
  },
  COMFYUI_UPSCALE_WORKFLOW: {
    schema: optionalString,
    default: '(the vary workflow)',
    doc: 'Path of the upscale workflow (output at `{{width}}`×`{{height}}`, twice the input).',
  },
  REPLICATE_API_TOKEN: {
    schema: optionalString,
    default: '',
    doc: 'Replicate API token (`r8_…`). Required for `replicate`.',
  },
  REPLICATE_API_URL: {
    schema: url.default('https://api.replicate.com/v1'),
    default: 'https://api.replicate.com/v1',
    doc: 'Base URL of the Replicate API (tests, proxies).',
  },
  REPLICATE_MODEL: {
    schema: z.string().min(3).default('black-forest-labs/flux-schnell'),
    default: 'black-forest-labs/flux-schnell',
    doc: 'Text-to-image model: `owner/name` (an official model) or `owner/name:version`.',
  },
  REPLICATE_VARY_MODEL: {
    schema: z.string().min(3).default('black-forest-labs/flux-dev'),
    default: 'black-forest-labs/flux-dev',
    doc: 'Image-to-image model for vary (takes `image` and `prompt_strength`).',
  },
  REPLICATE_UPSCALE_MODEL: {
    schema: optionalString,
    default: '(none: no upscales)',
    doc: 'Upscale model taking `image` and `scale`, e.g. `nightmareai/real-esrgan:<version>`.',
  },
  REPLICATE_OUTPUT_HOSTS: {
    schema: z.string().min(1).default('replicate.delivery,.replicate.delivery'),
    default: 'replicate.delivery,.replicate.delivery',
    doc: 'Hosts output files may be fetched from (`.host` matches subdomains); nothing else is fetched.',
  },
  DEFAULT_STEPS: {
    schema: int(1, 50).default(4),
    default: '4',
    doc: 'Inference steps when a request gives none.',
  },
  WORKER_CONCURRENCY: {
    schema: int(1, 64).optional(),
    default: '2 (4 with the demo generator)',
    doc: 'Jobs in flight per worker. The demo renders on this machine: with 2 slots a job’s phases (its render on the event loop, then libvips’ single-threaded PNG stage) leave cores idle, so it takes 4 unless this is set. A GPU backend keeps 2: more would only wait in its queue while the message is held here.',
  },
  PROGRESS_PUSH_MS: {
    schema: int(0, 60_000).default(250),
    default: '250',
    doc: 'Least time between two progress pushes of one job from the worker to the relay (the latest report wins, one push in flight per job; a failed one is dropped, and the final image never waits for one). The page shows every one; Discord and Slack status edits are thinned further (at most one a second per job, within the Slack budget). 0: progress is not forwarded.',
  },
  CANCEL_POLL_MS: {
    schema: int(0, 600_000).default(2000),
    default: '2000',
    doc: 'While a job runs with no push for this long (a generator that reports no progress), the worker asks the relay whether it was cancelled (a signed `generating` push); a cancelled job has its generator call aborted. 0: only progress pushes learn it.',
  },
  WORKER_DRAIN_SECONDS: {
    schema: int(0, 3600).default(25),
    default: '25',
    doc: 'On shutdown, how long running jobs may take to finish before they are handed back to the queue for another worker.',
  },
  JOB_TTL_SECONDS: {
    schema: int(10, 86_400).default(900),
    default: '900',
    doc: 'A job not started within this long after it was queued expires instead of running.',
  },
  RESULT_TTL_SECONDS: {
    schema: int(1, 3600).default(300),
    default: '300',
    doc: 'How long a finished image stays in memory for late or reconnecting clients.',
  },
  RESULT_BUFFER_BYTES: {
    schema: int(0, 4 * 1024 ** 3).default(256 * 1024 * 1024),
    default: '268435456',
    doc: 'Cap on the bytes of finished images held in memory; oldest go first.',
  },
  INPUT_IMAGE_HOSTS: {
    schema: z.string().default('cdn.discordapp.com,media.discordapp.net,files.slack.com'),
    default: 'cdn.discordapp.com,media.discordapp.net,files.slack.com',
    doc: "Hosts (`host` or `host:port`, comma-separated) input images of a vary or upscale may be fetched from, besides the relay's own signed `/inputs/` links (fetched from RELAY_URL).",
  },
  INPUT_IMAGE_ALLOW_HTTP: {
    schema: bool.default(false),
    default: 'false',
    doc: 'Allow plain http for input image hosts (tests with loopback fakes only; https otherwise).',
  },
  INPUT_IMAGE_MAX_BYTES: {
    schema: int(1024, 100 * 1024 * 1024).default(20 * 1024 * 1024),
    default: '20971520',
    doc: 'Largest input image the worker fetches (and the relay accepts as a web upload).',
  },
  INPUT_IMAGE_TIMEOUT_MS: {
    schema: int(100, 300_000).default(20_000),
    default: '20000',
    doc: 'How long the worker waits for an input image.',
  },
  UPLOAD_TTL_SECONDS: {
    schema: int(10, 86_400).default(900),
    default: '900',
    doc: "How long a web upload (and a signed link to an image in the relay's memory) stays valid.",
  },
  UPLOAD_BUFFER_BYTES: {
    schema: int(0, 4 * 1024 ** 3).default(128 * 1024 * 1024),
    default: '134217728',
    doc: 'Cap on the bytes of web uploads held in memory; oldest go first.',
  },
  PUSH_MAX_BYTES: {
    schema: int(1024, 100 * 1024 * 1024).default(10 * 1024 * 1024),
    default: '10485760',
    doc: 'Largest image the relay accepts on `POST /push`. A worker re-encodes a bigger generated image (WebP/JPEG, then smaller) to fit. Same value on relay and worker.',
  },
  WS_HEARTBEAT_SECONDS: {
    schema: int(1, 300).default(30),
    default: '30',
    doc: 'WebSocket ping interval; a socket that misses one is closed.',
  },
  WS_IDLE_SECONDS: {
    schema: int(1, 86_400).default(900),
    default: '900',
    doc: 'Close a WebSocket whose job has seen no event for this long.',
  },
  ALLOWED_ORIGINS: {
    schema: optionalString,
    default: "(the page's own origin)",
    doc: 'Comma-separated origins allowed for CORS and WebSocket upgrades.',
  },
  TRUST_PROXY: {
    schema: z
      .string()
      .trim()
      .toLowerCase()
      .regex(/^(true|false|1|0|yes|no|fly|[1-9])$/, 'must be false, fly, true or a hop count 1-9')
      .default('false')
      .transform((v): false | 'fly' | number =>
        v === 'fly' ? 'fly' : v === 'false' || v === '0' || v === 'no' ? false : Number(v) || 1,
      ),
    default: 'false',
    doc: "Where the client address (the web page's rate-limit identity) comes from behind a proxy. `false`: the connection. `fly`: the `Fly-Client-IP` header Fly.io's proxy sets. `true` or a number N: the address N proxies back in X-Forwarded-For (`true` = 1: the entry your own proxy appended; entries a client wrote itself are never used).",
  },
  HTTP_REQUEST_TIMEOUT_SECONDS: {
    schema: int(1, 3600).default(30),
    default: '30',
    doc: 'A request (headers and body) must arrive within this long, or it is answered 408 and its connection closed. WebSockets are not affected once upgraded.',
  },
  HTTP_IDLE_TIMEOUT_SECONDS: {
    schema: int(1, 3600).default(10),
    default: '10',
    doc: 'A connection that sends nothing for this long while its request is still arriving, or between requests, is closed (a half-sent body is cut). A request being answered is not cut.',
  },
  METRICS_TOKEN: {
    schema: z.string().min(16, 'must be at least 16 characters').optional(),
    default: '',
    doc: '`GET /metrics` requires `Authorization: Bearer <token>`. Unset (and no METRICS_PORT): `/metrics` answers only direct loopback requests, never proxied ones.',
  },
  METRICS_PORT: {
    schema: int(1, 65535).optional(),
    default: '',
    doc: "Serve `/metrics` on this port of HOST instead (a listener of its own, for a private scraper such as Fly's `[metrics]`); the public port then has no `/metrics`. With `ROLE=worker`: the worker's `/healthz` and generator-backend `/metrics` on this port.",
  },
  // Chat platforms (see README: Discord, Slack).
  DISCORD_TOKEN: {
    schema: optionalString,
    default: '',
    doc: 'Bot token. Set: a discord.js gateway client receives `/imagine` (no public URL needed); also used for deliveries after the 15-minute interaction window.',
  },
  DISCORD_PUBLIC_KEY: {
    schema: optionalString,
    default: '',
    doc: 'Application public key. Set: `POST /discord/interactions` receives interactions over HTTP (Ed25519-verified).',
  },
  DISCORD_APPLICATION_ID: {
    schema: optionalString,
    default: '',
    doc: 'Application id (for command registration and webhook edits).',
  },
  DISCORD_GUILD_ID: {
    schema: optionalString,
    default: '',
    doc: '`npm run discord:register`: register to this guild only (instant) instead of globally.',
  },
  DISCORD_API_URL: {
    schema: url.default('https://discord.com/api'),
    default: 'https://discord.com/api',
    doc: 'Base URL of every Discord REST call (tests, proxies).',
  },
  SLACK_BOT_TOKEN: {
    schema: optionalString,
    default: '',
    doc: 'Slack bot token (`xoxb-…`). Set with a signing secret or app token to enable Slack.',
  },
  SLACK_SIGNING_SECRET: {
    schema: optionalString,
    default: '',
    doc: 'Slack signing secret: verifies `POST /slack/events` (HTTP mode).',
  },
  SLACK_APP_TOKEN: {
    schema: optionalString,
    default: '',
    doc: 'Slack app-level token (`xapp-…`): Socket Mode, no public URL needed.',
  },
  SLACK_API_URL: {
    schema: url.default('https://slack.com/api/'),
    default: 'https://slack.com/api/',
    doc: 'Base URL of every Slack Web API call.',
  },
  SLACK_ADMIN_USERS: {
    schema: optionalString,
    default: '',
    doc: 'Comma-separated Slack user ids allowed to use `/imagine-admin` besides workspace admins and owners.',
  },
  // Moderation and limits (defaults; moderators override per server/workspace/channel at runtime).
  REDIS_URL: {
    schema: optionalString,
    default: '',
    doc: 'Redis for rate limits, moderation settings and the job events relay instances share over pub/sub (so several relays can run). Unset: memory limits, an embedded SQLite settings file and one relay.',
  },
  DATA_DIR: {
    schema: z.string().min(1).default('.data'),
    default: '.data',
    doc: 'Where the embedded settings store (SQLite) lives when REDIS_URL is unset.',
  },
  REDIS_KEY_PREFIX: {
    schema: z.string().min(1).max(100).default('imagine:'),
    default: 'imagine:',
    doc: 'Prefix of every Redis key imagine writes (share one Redis between deployments).',
  },
  LIMIT_IMAGES_PER_USER: {
    schema: int(0, 1_000_000).default(20),
    default: '20',
    doc: 'Images one user may request per window, per server/workspace (web: per client IP). 0 refuses all.',
  },
  LIMIT_IMAGES_PER_SCOPE: {
    schema: int(0, 10_000_000).default(500),
    default: '500',
    doc: 'Images a whole server/workspace (or the web page) may request per window.',
  },
  LIMIT_WINDOW_SECONDS: {
    schema: int(10, 7 * 86_400).default(3600),
    default: '3600',
    doc: 'Length of the rate-limit window, in seconds.',
  },
  LIMIT_CONCURRENT_PER_USER: {
    schema: int(1, 1000).default(4),
    default: '4',
    doc: 'Jobs one user may have queued or running at once.',
  },
  LIMIT_QUEUE_LENGTH: {
    schema: int(1, 1_000_000).default(100),
    default: '100',
    doc: 'Beyond this many queued jobs new requests are refused at once ("imagine is busy (N jobs waiting); try again in about 2 minutes").',
  },
  LIMIT_IMAGE_SIDE: {
    schema: int(64, 2048).default(2048),
    default: '2048',
    doc: 'Largest width or height (pixels) a request may ask for; an upscale is measured on its input (a 2048² image may become 4096²).',
  },
  LIMIT_IMAGES_PER_JOB: {
    schema: int(1, 4).default(4),
    default: '4',
    doc: 'Most images one /imagine may make, and so the default of 4 where it is lower (moderators set it per server/channel as `max_images`; a user default over it is cut to it, an explicit request over it is refused). Every limit counts each image.',
  },
  LIMIT_STEPS: {
    schema: int(1, 50).default(50),
    default: '50',
    doc: 'Most denoising steps one request may ask for (user defaults above it are capped to it).',
  },
  BLOCKED_WORDS_BUILTIN: {
    schema: bool.default(true),
    default: 'true',
    doc: 'Use the small built-in list of blocked words (moderators can also turn it off per server/channel).',
  },
  BLOCKED_WORDS: {
    schema: optionalString,
    default: '',
    doc: 'Comma-separated words or phrases blocked everywhere, in addition to per-server lists (`*` at either end: prefix/suffix match).',
  },
  // Output safety: every generated image is classified in the worker before anyone sees it.
  SAFETY: {
    schema: z.enum(SAFETY_MODES).default('spoiler'),
    default: 'spoiler',
    doc: 'What happens to an image the safety classifier flags, unless a server/workspace/channel says otherwise (`/imagine-admin set safety=…`): `off` (not classified), `spoiler` (Discord spoiler, blurred on Slack and the web), `review` (held for a moderator in the review channel; blocks where none is set) or `block`.',
  },
  SAFETY_THRESHOLD: {
    schema: z.coerce.number().min(0).max(1).default(DEFAULT_SAFETY_THRESHOLD),
    default: String(DEFAULT_SAFETY_THRESHOLD),
    doc: "Default score (0–1: the classifier's Porn + Hentai + Sexy, or a generator's own if higher) at or above which an image is flagged. 0 flags every image.",
  },
  SAFETY_AGE_RESTRICTED: {
    schema: z.enum(SAFETY_MODES).optional(),
    default: '(as SAFETY)',
    doc: 'Default safety in Discord channels marked age-restricted (NSFW); moderators can change it with `nsfw_safety`.',
  },
  SAFETY_WEB: {
    schema: z.enum(SAFETY_MODES).optional(),
    default: '(as SAFETY)',
    doc: "Safety on the web page (its own scope; `review` blocks there, having no moderators' channel).",
  },
  SAFETY_MODEL: {
    schema: z.enum(SAFETY_MODELS).default('mobilenet_v2'),
    default: 'mobilenet_v2',
    doc: 'The NSFWJS model the worker classifies with (weights ship in the npm package): `mobilenet_v2`, `mobilenet_v2_mid` or `inception_v3` (see README: output safety, for cost).',
  },
  SAFETY_BACKEND: {
    schema: z.enum(SAFETY_BACKENDS).default('wasm'),
    default: 'wasm',
    doc: 'TensorFlow.js backend of the classifier: `wasm` (WebAssembly, ~10× faster) or `cpu` (plain JavaScript).',
  },
  SAFETY_REVIEW_TTL_SECONDS: {
    schema: int(60, 7 * 86_400).default(86_400),
    default: '86400',
    doc: "How long an image held for review stays in the relay's memory; a moderator clicking later is told it expired.",
  },
  SAFETY_REVIEW_MAX_BYTES: {
    schema: int(0, 4 * 1024 ** 3).default(128 * 1024 * 1024),
    default: '134217728',
    doc: 'Cap on the bytes of images held for review in memory; oldest go first.',
  },
} as const;

type EnvKey = keyof typeof ENV;
type Parsed = { [K in EnvKey]: z.output<(typeof ENV)[K]['schema']> };

/** The frozen configuration every part receives. */
export interface Config extends Omit<Parsed, 'RELAY_SECRET' | 'WORKER_CONCURRENCY'> {
  RELAY_SECRET: string;
  /** Jobs in flight per worker: WORKER_CONCURRENCY, else {@link defaultConcurrency}. */
  WORKER_CONCURRENCY: number;
  /** True when no external queue is configured (SQS without a URL): embedded SQS, generated secret allowed. */
  embedded: boolean;
  /** True when RELAY_SECRET was generated for this run. */
  secretGenerated: boolean;
}

/** Raised when the environment is invalid; the message names each variable. */
export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
    this.name = 'ConfigError';
  }
}

/**
 * Jobs in flight per worker when WORKER_CONCURRENCY is unset: 4 for the demo generator alone
 * (its work is this machine's CPU, and 2 slots leave cores idle between a job's phases), 2 for
 * a GPU backend (more would wait in the backend's own queue while this worker holds the job).
 */
export function defaultConcurrency(parsed: Pick<Parsed, 'GENERATOR' | 'GENERATORS'>): number {
  const backends = parsed.GENERATORS;
  const demoOnly =
    backends && backends.length > 0
      ? backends.every((b) => b.type === 'demo')
      : parsed.GENERATOR === 'demo';
  return demoOnly ? 4 : 2;
}

/** Parse configuration from an environment (defaults to `process.env`). */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<Record<EnvKey, string>> = {},
): Readonly<Config> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(ENV)) {
    let raw = overrides[key as EnvKey] ?? env[key];
    if (raw === '') raw = undefined;
    const result = def.schema.safeParse(raw);
    if (result.success) out[key] = result.data;
    else
      problems.push(
        `${key}=${JSON.stringify(raw)}: ${result.error.issues.map((i) => i.message).join('; ')}`,
      );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const parsed = out as Parsed;
  const bullmq = parsed.QUEUE_BACKEND === 'bullmq';
  const embedded = !bullmq && parsed.SQS_QUEUE_URL === undefined;
  for (const [i, b] of (parsed.GENERATORS ?? []).entries()) {
    const needsUrl = {
      a1111: 'A1111_URL',
      comfyui: 'COMFYUI_URL',
      http: 'MODAL_FLUX_URL',
      modal: 'MODAL_FLUX_URL',
    } as const;
    const fallback = needsUrl[b.type as keyof typeof needsUrl];
    if (fallback && !b.url && !parsed[fallback])
      problems.push(`GENERATORS[${i}] (${b.name}): type ${b.type} needs "url" (or ${fallback})`);
  }
  if (parsed.GENERATOR === 'a1111' && !parsed.A1111_URL)
    problems.push('A1111_URL: required when GENERATOR=a1111');
  if (parsed.GENERATOR === 'comfyui' && !parsed.COMFYUI_URL)
    problems.push('COMFYUI_URL: required when GENERATOR=comfyui');
  if (parsed.GENERATOR === 'replicate' && !parsed.REPLICATE_API_TOKEN)
    problems.push('REPLICATE_API_TOKEN: required when GENERATOR=replicate');
  for (const [i, b] of (parsed.GENERATORS ?? []).entries())
    if (b.type === 'replicate' && !b.token && !parsed.REPLICATE_API_TOKEN)
      problems.push(
        `GENERATORS[${i}] (${b.name}): type replicate needs "token" (or REPLICATE_API_TOKEN)`,
      );
  if ((parsed.GENERATOR === 'modal' || parsed.GENERATOR === 'http') && !parsed.MODAL_FLUX_URL)
    problems.push(`MODAL_FLUX_URL: required when GENERATOR=${parsed.GENERATOR}`);
  if (bullmq && !parsed.REDIS_URL)
    problems.push('REDIS_URL: required when QUEUE_BACKEND=bullmq (the queue lives in Redis)');
  if (bullmq && parsed.SQS_QUEUE_URL)
    problems.push('SQS_QUEUE_URL: not used when QUEUE_BACKEND=bullmq; unset one of them');
  if (!parsed.RELAY_SECRET && !embedded)
    problems.push(
      bullmq
        ? 'RELAY_SECRET: required (32+ characters) when QUEUE_BACKEND=bullmq'
        : 'RELAY_SECRET: required (32+ characters) when SQS_QUEUE_URL is set',
    );
  if (parsed.ROLE !== 'all' && embedded)
    problems.push(
      `ROLE=${parsed.ROLE}: a split relay/worker needs a shared queue; set SQS_QUEUE_URL or QUEUE_BACKEND=bullmq with REDIS_URL`,
    );
  if (problems.length > 0) throw new ConfigError(problems);
  const secretGenerated = !parsed.RELAY_SECRET;
  // On Fly.io the app's own name gives both addresses, whatever the app is called: the public
  // https://<app>.fly.dev, and, for a worker, the relay process group on the private network.
  const fly = parsed.FLY_APP_NAME;
  const PUBLIC_URL = parsed.PUBLIC_URL ?? (fly ? `https://${fly}.fly.dev` : undefined);
  const RELAY_URL =
    parsed.RELAY_URL ??
    (fly && parsed.ROLE === 'worker'
      ? `http://relay.process.${fly}.internal:${parsed.PORT}`
      : undefined);
  return Object.freeze({
    ...parsed,
    PUBLIC_URL,
    RELAY_URL,
    RELAY_SECRET: parsed.RELAY_SECRET ?? randomBytes(32).toString('base64url'),
    WORKER_CONCURRENCY: parsed.WORKER_CONCURRENCY ?? defaultConcurrency(parsed),
    embedded,
    secretGenerated,
  });
}
