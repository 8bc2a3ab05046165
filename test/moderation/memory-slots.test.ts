/**
 * In-memory concurrency slots keep leases in expiry order so taking a slot never scans every
 * lease or binding; these pin the behaviour that order must not change.
 */
import { describe, expect, it } from 'vitest';
import { MemoryConcurrencySlots } from '../../moderation/counters.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('MemoryConcurrencySlots', () => {
  it('expires a short lease taken after a longer one, and keeps the longer one', async () => {
    const c = clock();
    const slots = new MemoryConcurrencySlots(c.now);
    expect((await slots.acquire('u', 2, 60_000)).ok).toBe(true);
    expect((await slots.acquire('u', 2, 1_000)).ok).toBe(true);
    expect((await slots.acquire('u', 2, 1_000)).ok).toBe(false);
    c.advance(1_000);
    expect(await slots.held('u')).toBe(1);
    const again = await slots.acquire('u', 2, 1_000);
    expect(again).toMatchObject({ ok: true, held: 2 });
    c.advance(59_000);
    expect(await slots.held('u')).toBe(0);
  });

  it('frees leases in whatever order they are released', async () => {
    const c = clock();
    const slots = new MemoryConcurrencySlots(c.now);
    const leases = [];
    for (let i = 0; i < 5; i++) {
      const r = await slots.acquire('u', 5, 10_000 + i);
      if (!r.ok) throw new Error('refused');
      leases.push(r.lease);
    }
    await slots.release(leases[2]!);
    await slots.release(leases[0]!);
    expect(await slots.held('u')).toBe(3);
    c.advance(10_003);
    expect(await slots.held('u')).toBe(1);
  });

  it('releases a job’s lease by id among many outstanding, and a job that ended first', async () => {
    const c = clock();
    const slots = new MemoryConcurrencySlots(c.now);
    for (let i = 0; i < 20_000; i++) {
      const r = await slots.acquire(`user${i}`, 1, 60_000);
      if (!r.ok) throw new Error('refused');
      await slots.bind(`job${i}`, r.lease, 60_000);
    }
    await slots.releaseJob('job12345');
    expect(await slots.held('user12345')).toBe(0);
    expect(await slots.held('user12346')).toBe(1);
    // Ended before it was bound: the bind releases at once.
    await slots.releaseJob('early');
    const r = await slots.acquire('late', 1, 60_000);
    if (!r.ok) throw new Error('refused');
    await slots.bind('early', r.lease, 60_000);
    expect(await slots.held('late')).toBe(0);
    // Bindings past their time are forgotten; the leases themselves expired with them.
    c.advance(60_000);
    expect(await slots.held('user1')).toBe(0);
  });
});
