/**
 * Queue positions over WebSocket: when a job leaves the queue, each waiter whose job moved up is
 * told its true position (at most every 250 ms), and a waiter whose position did not change
 * (a job behind it left) gets no frame, however often the queue moves.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Enqueued, enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { sendPush } from '../helpers/push.ts';
import { openWaiter } from '../helpers/ws.ts';

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;
type Waiter = Awaited<ReturnType<typeof openWaiter>>;

/** The positions a waiter was told, in order (its first frame's included). */
const positionsOf = (w: Waiter) =>
  w.frames.texts.filter((f) => f.state === 'queued').map((f) => f.position);

describe('queue positions told to WebSocket waiters', () => {
  let app: Imagine;
  // No worker: jobs stay queued until a push (or a cancel) takes them off the queue.
  beforeAll(async () => {
    app = await startTestImagine({ LIMIT_CONCURRENT_PER_USER: '10' }, { role: 'relay' });
  });
  afterAll(async () => {
    await app?.stop();
  });
  const cancel = (jobId: string) => fetch(`${app.url}/jobs/${jobId}`, { method: 'DELETE' });
  const truePosition = (jobId: string) => app.relay!.relay.tracker.position(jobId);

  it('tells each waiter its new position when one ahead leaves, and nothing when one behind does', async () => {
    const jobs: Enqueued[] = [];
    for (const name of ['a', 'b', 'c', 'd', 'e']) jobs.push(await enqueueJob(app.url, name));
    const [first, second, third, fourth, fifth] = jobs as [
      Enqueued,
      Enqueued,
      Enqueued,
      Enqueued,
      Enqueued,
    ];
    // Waiters on the second, third and fourth jobs; none on the first and the fifth.
    const waiters = await Promise.all([second, third, fourth].map((j) => openWaiter(j.ws)));
    const [w2, w3, w4] = waiters as [Waiter, Waiter, Waiter];
    const base = truePosition(second.jobId)!;
    expect([w2, w3, w4].map((w) => positionsOf(w))).toEqual([[base], [base + 1], [base + 2]]);

    // The first job starts: everyone behind it moves up one.
    const started = await sendPush(app.url, { jobId: first.jobId, status: 'generating' });
    expect(started.status).toBe(200);
    await vi.waitFor(() =>
      expect([w2, w3, w4].map((w) => positionsOf(w))).toEqual([
        [base, base - 1],
        [base + 1, base],
        [base + 2, base + 1],
      ]),
    );

    // The fifth job (behind them all) is cancelled: no waiter moved, so none is told anything.
    expect((await cancel(fifth.jobId)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 700));
    expect([w2, w3, w4].map((w) => w.frames.texts.length)).toEqual([2, 2, 2]);

    // The third leaves from the middle: only the fourth moves; the second is not told again.
    expect((await cancel(third.jobId)).status).toBe(200);
    await vi.waitFor(() => expect(positionsOf(w4)).toEqual([base + 2, base + 1, base]));
    await new Promise((r) => setTimeout(r, 400));
    expect(positionsOf(w2)).toEqual([base, base - 1]);
    expect((await w3.closed).closeReason).toBe('cancelled');
    // What each was told last is where it is.
    expect(positionsOf(w2).at(-1)).toBe(truePosition(second.jobId));
    expect(positionsOf(w4).at(-1)).toBe(truePosition(fourth.jobId));
    for (const w of [w2, w4]) w.socket.close();
  });
});
