/** A WebSocket client that collects frames, for tests. */
import WebSocket from 'ws';

/** Frames received by {@link followJob}. */
export interface Followed {
  texts: Array<Record<string, unknown>>;
  /** The images: every binary frame but previews. */
  binaries: Buffer[];
  /** The preview binaries (each follows its `preview` text frame). */
  previews: Buffer[];
  closeCode: number;
  /** The close frame's reason (the final state, for a job that ended). */
  closeReason: string;
}

/**
 * File a frame: a binary after a `preview` frame is that preview's bytes (a job slow enough to
 * forward progress sends one, which would otherwise count as an image), any other is an image.
 */
function collect(out: Followed, data: Buffer, isBinary: boolean): void {
  if (!isBinary) {
    out.texts.push(JSON.parse(String(data)));
    return;
  }
  const bytes = Buffer.from(data);
  if (out.texts.at(-1)?.type === 'preview') out.previews.push(bytes);
  else out.binaries.push(bytes);
}

/** Connect to a job's WebSocket and collect every frame until the server closes it. */
export function followJob(wsUrl: string, timeoutMs = 15_000): Promise<Followed> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl);
    const out: Followed = { texts: [], binaries: [], previews: [], closeCode: 0, closeReason: '' };
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(out.texts)}`));
    }, timeoutMs);
    socket.on('message', (data, isBinary) => collect(out, data as Buffer, isBinary));
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
  const frames: Followed = { texts: [], binaries: [], previews: [], closeCode: 0, closeReason: '' };
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
      collect(frames, data as Buffer, isBinary);
      resolve();
    });
    socket.once('error', reject);
  });
  return { frames, closed, socket };
}
