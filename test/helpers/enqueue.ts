/** `POST /enqueue` as the web page does, for tests. */

/** What a successful enqueue answers. */
export interface Enqueued {
  jobId: string;
  ws: string;
  demo: boolean;
  seed: number;
  position: number;
}

/**
 * Enqueue a prompt for one image (64×64 unless `params` say otherwise; `params.count` for more:
 * a request naming no count makes 4); throws unless the relay answers 202.
 */
export async function enqueueJob(
  baseUrl: string,
  prompt: string,
  params: Record<string, unknown> = { width: 64, height: 64 },
): Promise<Enqueued> {
  const res = await fetch(`${baseUrl}/enqueue`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, count: 1, ...params }),
  });
  if (res.status !== 202) throw new Error(`enqueue answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as Enqueued;
}

/** A multipart body built by FormData (as another language's HTTP client would), with its type. */
export async function formBody(form: FormData): Promise<{ body: Buffer; contentType: string }> {
  const req = new Request('http://form.invalid/', { method: 'POST', body: form });
  return {
    body: Buffer.from(await req.arrayBuffer()),
    contentType: req.headers.get('content-type')!,
  };
}
