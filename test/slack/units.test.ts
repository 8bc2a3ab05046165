import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  decodeJobSpec,
  encodeJobSpec,
  escapeMrkdwn,
  escapeTruncated,
  failedMessage,
  fitsButton,
  generatingLine,
  requestFromSpec,
  resultMessage,
  statusMessage,
  truncate,
} from '../../bot/slack/blocks.ts';
import { slackCommands } from '../../bot/slack/commands/index.ts';
import { SlackRateBudget } from '../../bot/slack/rate-budget.ts';
import { adviceFor } from '../../bot/slack/replies.ts';
import { requestFromText } from '../../bot/slack/request-text.ts';
import { ImagineError } from '../../contracts/errors.ts';
import { PROMPT_MAX_CHARS } from '../../contracts/job.ts';
import { buttonsOf, textOf } from '../fakes/slack/requests.ts';

describe('button values carry the whole job spec', () => {
  it('round-trips prompts with the separator, quotes and non-ASCII', () => {
    const spec = { prompt: 'a|b "c" ünïcode 🦊', seed: 0, width: 832, height: 1216, count: 3 };
    expect(decodeJobSpec(encodeJobSpec(spec))).toEqual(spec);
    expect(decodeJobSpec(encodeJobSpec({ ...spec, model: 'sdxl-base' }))).toEqual({
      ...spec,
      model: 'sdxl-base',
    });
    expect(decodeJobSpec(encodeJobSpec({ prompt: 'x' }))).toEqual({
      prompt: 'x',
      seed: undefined,
      width: undefined,
      height: undefined,
      count: undefined,
    });
  });

  it('a v1 value (from before the grid) still reads, as the one image its job made', () => {
    const spec = decodeJobSpec('v1|42|1344|768|a fox | in space');
    expect(spec).toEqual({
      prompt: 'a fox | in space',
      seed: 42,
      width: 1344,
      height: 768,
      count: 1,
    });
    expect(requestFromSpec(spec!, false)).toEqual({
      prompt: 'a fox | in space',
      seed: 42,
      aspect: '16:9',
      count: 1,
    });
  });

  it('Retry asks for the job again with its count and model', () => {
    const value = encodeJobSpec({
      prompt: 'herons',
      seed: 7,
      width: 1024,
      height: 1024,
      count: 3,
      model: 'sdxl-base',
    });
    expect(requestFromSpec(decodeJobSpec(value)!, false)).toEqual({
      prompt: 'herons',
      seed: 7,
      aspect: '1:1',
      count: 3,
      model: 'sdxl-base',
    });
  });

  it('a longest allowed ASCII prompt with the largest seed and a longest model name still fits a button value', () => {
    const value = encodeJobSpec({
      prompt: '"'.repeat(PROMPT_MAX_CHARS),
      seed: 2 ** 32 - 1,
      width: 2048,
      height: 2048,
      count: 4,
      model: 'm'.repeat(100),
    });
    expect(fitsButton(value)).toBe(true);
  });

  it('a spec that cannot fit gets a card without buttons rather than a refused message', () => {
    const facts = { userId: 'U1', prompt: '🦊'.repeat(1000), demo: false };
    const card = resultMessage(facts, { prompt: facts.prompt }, undefined);
    expect(buttonsOf(card.blocks)).toEqual([]);
  });

  it('block text stays within 3000 UTF-16 units for any allowed prompt (emoji and escapes)', () => {
    const prompt = `${'🦊'.repeat(400)}${'&'.repeat(600)}`;
    const spec = { prompt, seed: 1, width: 1024, height: 1024 };
    const facts = { userId: 'U1', prompt, seed: 1, demo: false };
    for (const message of [
      statusMessage('U1', prompt, 'queued'),
      resultMessage(facts, spec, 'F1'),
      failedMessage('U1', spec, 'advice'),
    ]) {
      const texts = textOf(message.blocks).split('\n');
      for (const t of texts) expect(t.length).toBeLessThanOrEqual(3000);
    }
    // Never half an emoji.
    expect(truncate('🦊🦊🦊', 4)).toBe('🦊…');
  });

  it('a long prompt is cut before escaping: never through an entity, never the mention or closing markup', () => {
    const prompt = `${'a'.repeat(5)}${'&'.repeat(995)}`;
    const spec = { prompt, seed: 1, width: 1024, height: 1024 };
    const facts = { userId: 'U1', prompt, seed: 1, demo: false };
    for (const message of [
      statusMessage('U1', prompt, 'queued'),
      resultMessage(facts, spec, 'F1'),
      failedMessage('U1', spec, 'advice'),
    ]) {
      const head = textOf(message.blocks).split('\n')[0]!;
      expect(head.length).toBeLessThanOrEqual(3000);
      expect(head).toMatch(/^<@U1>[^*]*\*a{5}(&amp;)+…\*$/);
    }
    expect(escapeTruncated('a&b', 6)).toBe('a…');
    expect(escapeTruncated('a&bc', 7)).toBe('a&amp;…');
    expect(escapeTruncated('<!here>', 50)).toBe('&lt;!here&gt;');
    expect(escapeTruncated('🦊&🦊', 4)).toBe('🦊…');
  });

  it('each version of a card gets new block ids', () => {
    const spec = { prompt: 'p', seed: 1 };
    const facts = { userId: 'U1', prompt: 'p', demo: false };
    const ids = (blocks: unknown[]) =>
      (blocks as Array<{ block_id?: string }>).map((b) => b.block_id).filter(Boolean);
    const a = [
      ...ids(resultMessage(facts, spec, 'F1').blocks),
      ...ids(failedMessage('U1', spec, 'x').blocks),
    ];
    const b = [
      ...ids(resultMessage(facts, spec, 'F1').blocks),
      ...ids(failedMessage('U1', spec, 'x').blocks),
    ];
    expect(a.length).toBeGreaterThan(0);
    for (const id of b) expect(a).not.toContain(id);
  });

  it('rejects values that are not ours', () => {
    expect(decodeJobSpec(undefined)).toBeUndefined();
    expect(decodeJobSpec('hello')).toBeUndefined();
    expect(decodeJobSpec('v1|1|2|3|')).toBeUndefined();
    expect(decodeJobSpec('v3|1|2|3|4||')).toBeUndefined();
  });

  it('maps sizes back to an aspect; Re-roll drops the seed, Retry keeps it', () => {
    const spec = { prompt: 'p', seed: 9, width: 1344, height: 768 };
    expect(requestFromSpec(spec, true)).toEqual({ prompt: 'p', aspect: '16:9' });
    expect(requestFromSpec(spec, false)).toEqual({ prompt: 'p', aspect: '16:9', seed: 9 });
    expect(requestFromSpec({ prompt: 'p', width: 512, height: 512 }, true)).toEqual({
      prompt: 'p',
      width: 512,
      height: 512,
    });
  });

  it('escapes what mrkdwn would interpret as links and mentions', () => {
    expect(escapeMrkdwn('<!channel> & <@U1>')).toBe('&lt;!channel&gt; &amp; &lt;@U1&gt;');
  });
});

describe('/imagine text', () => {
  it('takes options anywhere and leaves the rest as the prompt', () => {
    expect(requestFromText('a fox --ar 16:9 in space --seed 42')).toEqual({
      prompt: 'a fox in space',
      aspect: '16:9',
      seed: 42,
    });
    expect(requestFromText('a fox --steps=8')).toEqual({ prompt: 'a fox', steps: 8 });
  });

  it('reads the text as Slack sends it: &amp; &lt; &gt; are what the user typed', () => {
    expect(requestFromText('cats &amp; dogs &lt;3 &gt;_&lt; --seed 1')).toEqual({
      prompt: 'cats & dogs <3 >_<',
      seed: 1,
    });
    // A typed "&lt;" arrives as "&amp;lt;" and stays "&lt;".
    expect(requestFromText('&amp;lt;').prompt).toBe('&lt;');
  });

  it('accepts the em dash phones put in for "--"', () => {
    expect(requestFromText('a fox —seed 3')).toEqual({ prompt: 'a fox', seed: 3 });
  });

  it('unknown options and missing values are INVALID_PARAMETERS', () => {
    for (const text of ['a fox --colour red', 'a fox --seed']) {
      expect(() => requestFromText(text)).toThrow(
        expect.objectContaining({ code: 'INVALID_PARAMETERS' }),
      );
    }
  });
});

describe('advice says what to do', () => {
  it('a rate limit says when to come back', () => {
    const err = new ImagineError('RATE_LIMITED', 'x', { retryAfterSeconds: 30 });
    expect(adviceFor(err)).toContain('in 30 seconds');
  });
});

describe('manifest.yaml', () => {
  const manifest = readFileSync(new URL('../../bot/slack/manifest.yaml', import.meta.url), 'utf8');

  it('declares every registered command', () => {
    for (const c of slackCommands) expect(manifest).toContain(`- command: ${c.name}\n`);
  });

  it('asks for the scopes the adapter uses', () => {
    for (const scope of [
      'commands',
      'chat:write',
      'chat:write.public',
      'files:write',
      'files:read',
      'im:history',
    ])
      expect(manifest).toMatch(new RegExp(`^\\s+- ${scope}$`, 'm'));
  });

  it('declares the message shortcut the adapter listens for', () => {
    expect(manifest).toMatch(
      /- name: Imagine from this image\n\s+type: message\n\s+callback_id: imagine_from_image\n/,
    );
  });
});

describe('status edits and the tier budget', () => {
  it('a new percentage is the first status edit to drop, before queue positions and "Generating…"', () => {
    const budget = new SlackRateBudget({ tiers: { 'chat.update': 10 }, now: () => 0 });
    let percent = 0;
    while (budget.tryTake('chat.update', 'percent')) percent += 1;
    expect(percent).toBe(3);
    expect(budget.tryTake('chat.update', 'position')).toBe(true);
    expect(budget.tryTake('chat.update', 'progress')).toBe(true);
  });

  it('the status line shows the percentage, and the status message a Cancel carrying the job id', () => {
    expect(generatingLine(undefined)).toBe(':art: Generating…');
    expect(generatingLine(0.426)).toBe(':art: Generating… 42%');
    const jobId = 'A'.repeat(22);
    const message = statusMessage('U1', 'a fox', generatingLine(0.5), jobId);
    expect(buttonsOf(message.blocks)).toEqual([
      expect.objectContaining({ action_id: 'imagine_cancel', value: jobId }),
    ]);
    expect(buttonsOf(statusMessage('U1', 'a fox', 'queued').blocks)).toEqual([]);
  });
});
