// Counts this thread's event-loop turns (setImmediate) and microtasks (queueMicrotask) into
// `c.turns` and `c.microtasks`; the preloads that count a node's hops share it.
export function countLoopHops(c) {
  const si = globalThis.setImmediate;
  globalThis.setImmediate = function (...a) {
    c.turns++;
    return si.apply(this, a);
  };
  const qm = globalThis.queueMicrotask;
  globalThis.queueMicrotask = function (f) {
    c.microtasks++;
    return qm(f);
  };
}
