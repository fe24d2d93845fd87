// The backup end's ack that the output rule waits for leaves at once (issue 14, output-rule
// delay stage by stage): not a microtask later, behind what the backup node queued meanwhile.
// The channel core is the real one; its transport is the seam it defines for a wire, here
// one that records what the core writes, as a TLS socket or a posted message would carry it.
import { describe, expect, it } from 'vitest';
import { Encoder } from '../runtime/log/codec.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { BackupCore } from '../runtime/channel/core.js';

const timer = (seq: number): LogEntry => ({ seq, icount: seq * 1000, type: 'timer' });
const marker = (seq: number, count: number): LogEntry => ({ seq, icount: seq * 1000, type: 'output', kind: 'console', count });

function openBackup(holdMs: number): { core: BackupCore; acks: number[]; chunk: (es: LogEntry[]) => void } {
  const acks: number[] = [];
  const core: BackupCore = new BackupCore({ holdMs }, {
    startHandshake: () => core.admitted(),
    writeAck: (seq) => acks.push(seq),
    end: () => core.ended(),
    abort: () => undefined,
  });
  core.connected();
  const enc = new Encoder();
  const chunk = (es: LogEntry[]): void => {
    const frames = es.map((e) => enc.encode(e));
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      all.set(f, at);
      at += f.length;
    }
    core.chunk(all);
  };
  return { core, acks, chunk };
}

const microtasks = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('backup end: an awaited ack is written at once', () => {
  it('acks a chunk with a marker once, before the chunk call returns', async () => {
    const { core, acks, chunk } = openBackup(60_000);
    core.end.entries$.subscribe((e) => core.end.ack(e.seq));
    await microtasks();
    chunk([timer(0), timer(1), marker(2, 1), timer(3)]);
    // Synchronously: the entries were acked one by one while the chunk was delivered, and one
    // ack, covering the whole chunk, left at its end.
    expect(acks).toEqual([3]);
    await microtasks();
    expect(acks).toEqual([3]);
  });

  it('writes one ack for two markers of one chunk', async () => {
    const { core, acks, chunk } = openBackup(60_000);
    core.end.entries$.subscribe((e) => core.end.ack(e.seq));
    await microtasks();
    chunk([marker(0, 1), timer(1), marker(2, 2)]);
    expect(acks).toEqual([2]);
  });

  it('writes an ack asked after the delivery inside the call (as the backup node acks from its chart)', async () => {
    const { core, acks, chunk } = openBackup(60_000);
    const got: LogEntry[] = [];
    core.end.entries$.subscribe((e) => got.push(e));
    await microtasks();
    chunk([timer(0), marker(1, 1)]);
    expect(acks).toEqual([]);
    core.end.ack(got[got.length - 1]!.seq);
    expect(acks).toEqual([1]);
  });

  it('still holds an ack that covers only inputs, up to the hold', async () => {
    const { core, acks, chunk } = openBackup(20);
    core.end.entries$.subscribe((e) => core.end.ack(e.seq));
    await microtasks();
    chunk([timer(0), timer(1)]);
    await microtasks();
    expect(acks).toEqual([]);
    await sleep(60);
    expect(acks).toEqual([1]);
    // A marker after them: its ack leaves at once, the inputs' hold has nothing left to do.
    chunk([timer(2), marker(3, 1)]);
    expect(acks).toEqual([1, 3]);
  });

  it('keeps the embedded channel (no hold) on one ack per tick', async () => {
    const { core, acks, chunk } = openBackup(0);
    core.end.entries$.subscribe((e) => core.end.ack(e.seq));
    await microtasks();
    chunk([timer(0), marker(1, 1)]);
    chunk([marker(2, 2)]);
    expect(acks).toEqual([]);
    await microtasks();
    expect(acks).toEqual([2]);
  });
});
