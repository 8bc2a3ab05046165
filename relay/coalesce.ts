/**
 * Run `fn` at most once per `ms`, after the first call in a window: bursts of queue-position
 * changes become one broadcast instead of one per change (O(n) instead of O(n²) frames).
 */
export function coalesce(fn: () => void, ms: number): { (): void; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const call = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      fn();
    }, ms);
    timer.unref();
  };
  call.cancel = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  return call;
}
