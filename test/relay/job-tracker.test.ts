import { describe, expect, it } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import { BufferedImage, JobTracker, type JobUpdate } from '../../relay/job-tracker.ts';

const job = (jobId: string, createdAt = 1000): Job => ({
  v: 1,
  jobId,
  task: 'generate',
  count: 1,
  prompt: 'p',
  params: { width: 64, height: 64, seed: 1, steps: 4 },
  origin: { platform: 'web' },
  createdAt,
  expiresAt: createdAt + 60_000,
});
const id = (n: number) => `job-${String(n).padStart(20, '0')}`;
const image = (size: number) => [new BufferedImage(Buffer.alloc(size), 'image/png')];

describe('JobTracker', () => {
  it('keeps queue order and positions as jobs leave the queue', () => {
    const t = new JobTracker({ resultTtlMs: 1000, maxBufferedBytes: 1000, jobTtlMs: 10_000 });
    expect(t.registerQueued(job(id(1))).position).toBe(0);
    expect(t.registerQueued(job(id(2))).position).toBe(1);
    expect(t.registerQueued(job(id(3))).position).toBe(2);
    t.apply(id(1), { state: 'generating' });
    expect(t.position(id(3))).toBe(1);
    expect(t.position(id(1))).toBeUndefined();
  });

  it('reports every queued job’s position as jobs leave in any order', () => {
    const t = new JobTracker({ resultTtlMs: 1000, maxBufferedBytes: 1000, jobTtlMs: 10_000 });
    // A reference list, and a fixed pseudo-random order of arrivals and departures.
    const model: string[] = [];
    let x = 12345;
    const rand = (n: number) => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x % n;
    };
    let next = 0;
    for (let step = 0; step < 2000; step++) {
      const r = rand(10);
      if (r < 5 || model.length === 0) {
        const jobId = id(next++);
        expect(t.registerQueued(job(jobId)).position).toBe(model.length);
        model.push(jobId);
      } else {
        // Mostly the head leaves (workers take jobs in order), sometimes any job.
        const at = r < 8 ? 0 : rand(model.length);
        const [gone] = model.splice(at, 1);
        if (r === 9) t.forget(gone!);
        else t.apply(gone!, { state: 'generating' });
        expect(t.position(gone!)).toBeUndefined();
      }
      for (let i = 0; i < model.length; i += 7) expect(t.position(model[i]!)).toBe(i);
      expect([...t.queuedPositions()].map(([jobId]) => jobId)).toEqual(model);
    }
  });

  it('evicts the oldest images when over the byte cap, and says so', () => {
    const t = new JobTracker({ resultTtlMs: 60_000, maxBufferedBytes: 250, jobTtlMs: 10_000 });
    t.apply(id(1), { state: 'done' }, image(100));
    t.apply(id(2), { state: 'done' }, image(100));
    t.apply(id(3), { state: 'done' }, image(100));
    expect(t.bufferedBytes).toBe(200);
    expect(t.get(id(1))?.images).toBeUndefined();
    expect(t.get(id(1))?.imageEvicted).toBe(true);
    expect(t.get(id(3))?.images?.[0]?.bytes.length).toBe(100);
  });

  it('hands an image too big to keep to the update, then lets it go', () => {
    const t = new JobTracker({ resultTtlMs: 60_000, maxBufferedBytes: 50, jobTtlMs: 10_000 });
    const seen: Array<number | undefined> = [];
    t.on('update', ({ record }) => seen.push(record.images?.[0]?.size));
    t.apply(id(1), { state: 'done' }, image(100));
    expect(seen).toEqual([100]);
    expect(t.get(id(1))?.images).toBeUndefined();
    expect(t.get(id(1))?.imageEvicted).toBe(true);
    expect(t.bufferedBytes).toBe(0);
  });

  it('forgets finished jobs after the TTL and expires stuck ones', () => {
    let now = 0;
    const t = new JobTracker({
      resultTtlMs: 1000,
      maxBufferedBytes: 1000,
      jobTtlMs: 5000,
      now: () => now,
    });
    t.apply(id(1), { state: 'done' }, image(10));
    t.registerQueued(job(id(2), 0));
    now = 2000;
    t.sweep();
    expect(t.get(id(1))).toBeUndefined();
    expect(t.bufferedBytes).toBe(0);
    expect(t.get(id(2))?.state).toBe('queued');
    now = 6000;
    t.sweep();
    expect(t.get(id(2))?.state).toBe('expired');
    expect(t.queuedCount).toBe(0);
  });

  it('treats repeats after a final state as duplicates', () => {
    const t = new JobTracker({ resultTtlMs: 1000, maxBufferedBytes: 1000, jobTtlMs: 5000 });
    expect(t.apply(id(1), { state: 'done' }, image(10)).duplicate).toBe(false);
    expect(t.apply(id(1), { state: 'failed' }).duplicate).toBe(true);
    expect(t.get(id(1))?.state).toBe('done');
  });

  it('marks changes from other relay instances as remote, and leaves their expiry to them', () => {
    let now = 1000;
    const t = new JobTracker({
      resultTtlMs: 60_000,
      maxBufferedBytes: 1000,
      jobTtlMs: 5000,
      now: () => now,
    });
    // Records are live objects: note each update as it was emitted.
    const updates: Array<[string, string, boolean]> = [];
    t.on('update', (u: JobUpdate) =>
      updates.push([u.record.jobId, u.record.state, u.remote === true]),
    );
    t.registerQueued(job(id(1)));
    t.learnQueued({ jobId: id(2), createdAt: 1000 });
    expect(t.position(id(2))).toBe(1);
    t.learnQueued({ jobId: id(1), createdAt: 1000 }); // already known: ignored
    t.apply(id(1), { state: 'generating' }, undefined, { remote: true });
    t.apply(id(2), { state: 'generating' });
    expect(updates).toEqual([
      [id(1), 'queued', false],
      [id(2), 'queued', true],
      [id(1), 'generating', true],
      [id(2), 'generating', false],
    ]);
    now += 10_000;
    t.sweep();
    // Both expire; only the one last changed here is expired as this instance's own change.
    expect(updates.slice(4)).toEqual([
      [id(1), 'expired', true],
      [id(2), 'expired', false],
    ]);
  });

  it('hands a job learned after the question to whoever waits for it', async () => {
    const t = new JobTracker({ resultTtlMs: 60_000, maxBufferedBytes: 1000, jobTtlMs: 10_000 });
    const pending = t.whenKnown(id(1), 60_000);
    const other = t.whenKnown(id(2), 60_000);
    t.learnQueued({ jobId: id(1), createdAt: 1000 });
    expect((await pending)?.state).toBe('queued');
    t.apply(id(2), { state: 'done' }, image(10), { remote: true });
    expect((await other)?.state).toBe('done');
    expect(await t.whenKnown(id(3), 0)).toBeUndefined();
  });
});

describe('BufferedImage', () => {
  it('joins its chunks once, holding the joined copy in their place, and reads its head without joining', () => {
    const bytes = Buffer.from('0123456789abcdefghij');
    const pieces = [
      bytes.subarray(0, 3),
      bytes.subarray(3, 3),
      bytes.subarray(3, 9),
      bytes.subarray(9),
    ];
    const image = new BufferedImage(pieces, 'image/png');
    expect(image.size).toBe(bytes.length);
    expect(image.head(7).toString()).toBe('0123456');
    expect(image.head(40).toString()).toBe(bytes.toString());
    expect(image.chunks).toHaveLength(4);
    const joined = image.bytes;
    expect(joined.equals(bytes)).toBe(true);
    expect(image.chunks).toEqual([joined]);
    expect(image.chunks[0]).toBe(joined);
    expect(image.bytes).toBe(joined);
  });
});
