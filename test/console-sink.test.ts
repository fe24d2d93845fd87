// `ftvm primary`/`backup` write released console bytes to stdout: the bytes one release lets
// out (one ack: a printed line) leave in one write, a microtask later, in order (issue 14,
// output-rule delay stage by stage: a write per byte cost the primary's thread ~3 µs each).
import { describe, expect, it } from 'vitest';
import { Subject } from 'rxjs';
import { sinkOutputs } from '../runtime/commands/primary.js';
import type { ReleasedOutput } from '../runtime/ft/output-gate.js';

const con = (index: number, ch: string): ReleasedOutput => ({ index, node: 'primary', generation: 1, output: { kind: 'console', icount: index, byte: ch.charCodeAt(0) } });
const text = (b: Uint8Array): string => Buffer.from(b).toString('latin1');
const microtask = (): Promise<void> => new Promise((r) => queueMicrotask(r));

describe('console sink', () => {
  it('writes the bytes of one release once, after the release and in order', async () => {
    const released$ = new Subject<ReleasedOutput>();
    const writes: string[] = [];
    sinkOutputs(released$, undefined, (b) => writes.push(text(b)));
    [...'seq 000001\n'].forEach((ch, i) => released$.next(con(i, ch)));
    // Released, not yet written: nothing in between can tell the backup they left.
    expect(writes).toEqual([]);
    await microtask();
    expect(writes).toEqual(['seq 000001\n']);
    // A second release, another write.
    released$.next(con(11, 'x'));
    released$.next({ index: 12, node: 'primary', generation: 1, output: { kind: 'power', icount: 12, code: 0 } });
    released$.next(con(13, 'y'));
    await microtask();
    expect(writes).toEqual(['seq 000001\n', 'xy']);
  });

  it('writes nothing for a release without console bytes', async () => {
    const released$ = new Subject<ReleasedOutput>();
    const writes: string[] = [];
    sinkOutputs(released$, undefined, (b) => writes.push(text(b)));
    released$.next({ index: 0, node: 'primary', generation: 1, output: { kind: 'power', icount: 0, code: 0 } });
    await microtask();
    expect(writes).toEqual([]);
  });
});
