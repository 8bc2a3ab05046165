/** A WebSocket client that collects frames, for tests. */
import WebSocket from 'ws';

/** Frames received by {@link followJob}. */
export interface Followed {
  texts: Array<Record<string, unknown>>;
  binaries: Buffer[];
  closeCode: number;
  /** The close frame's reason (the final state, for a job that ended). */
  closeReason: string;
}

/** Connect to a job's WebSocket and collect every frame until the server closes it. */
export function followJob(wsUrl: string, timeoutMs = 15_000): Promise<Followed> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl);
    const out: Followed = { texts: [], binaries: [], closeCode: 0, closeReason: '' };
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(out.texts)}`));
    }, timeoutMs);
    socket.on('message', (data, isBinary) => {
      if (isBinary) out.binaries.push(Buffer.from(data as Buffer));
      else out.texts.push(JSON.parse(String(data)));
    });
    socket.on('close', (code, reason) => {
      clearTimeout(timer);
      out.closeCode = code;
      out.closeReason = reason.toString();
      resolve(out);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * A WebSocket waiter that has received its first frame, so it is registered on the relay before
 * the test goes on; `frames` fills as frames arrive, `closed` resolves with all of them.
 */
export async function openWaiter(
  wsUrl: string,
  timeoutMs = 15_000,
): Promise<{ frames: Followed; closed: Promise<Followed>; socket: WebSocket }> {
  const socket = new WebSocket(wsUrl);
  const frames: Followed = { texts: [], binaries: [], closeCode: 0, closeReason: '' };
  const closed = new Promise<Followed>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(frames.texts)}`));
    }, timeoutMs);
    socket.on('close', (code, reason) => {
      clearTimeout(timer);
      frames.closeCode = code;
      frames.closeReason = reason.toString();
      resolve(frames);
    });
    socket.on('error', reject);
  });
  closed.catch(() => {});
  await new Promise<void>((resolve, reject) => {
    socket.on('message', (data, isBinary) => {
      if (isBinary) frames.binaries.push(Buffer.from(data as Buffer));
      else frames.texts.push(JSON.parse(String(data)));
      resolve();
    });
    socket.once('error', reject);
  });
  return { frames, closed, socket };
}
