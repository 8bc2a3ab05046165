/** A WebSocket client that collects frames, for tests. */
import WebSocket from 'ws';

/** Frames received by {@link followJob}. */
export interface Followed {
  texts: Array<Record<string, unknown>>;
  binaries: Buffer[];
  closeCode: number;
}

/** Connect to a job's WebSocket and collect every frame until the server closes it. */
export function followJob(wsUrl: string, timeoutMs = 15_000): Promise<Followed> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl);
    const out: Followed = { texts: [], binaries: [], closeCode: 0 };
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(out.texts)}`));
    }, timeoutMs);
    socket.on('message', (data, isBinary) => {
      if (isBinary) out.binaries.push(Buffer.from(data as Buffer));
      else out.texts.push(JSON.parse(String(data)));
    });
    socket.on('close', (code) => {
      clearTimeout(timer);
      out.closeCode = code;
      resolve(out);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
