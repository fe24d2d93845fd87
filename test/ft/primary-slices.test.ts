// A primary chains slices in one CPU batch (issue 14, eighth pass): the real primary node runs
// bench-timer (a 1 kHz timer and console lines) over a real port channel (a MessageChannel in
// this thread, polled between slices, as a worker pair's primary is), to its real backup end,
// which acks each entry on receipt. The test counts the machine's slices (Machine.step) against
// the CPU batches (one `cpu.batchEnded` each), and checks every output's marker and release.
import { readFileSync } from 'node:fs';
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createPortBackup, createPortPrimary, type PortLike } from '../../runtime/channel/port.js';
import { Decoder } from '../../runtime/log/codec.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { PrimaryNode } from '../../runtime/ft/primary-node.js';
import { guestPath } from '../../runtime/guests.js';
import type { LogEntry } from '../../runtime/log/entry.js';
import { Machine } from '../../runtime/machine.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import type { Output } from '../../runtime/types.js';

/** The primary's side of a MessageChannel, decoding each chunk it posts (before the transfer detaches it). */
function decodingPort(port: MessageChannel['port1'], entries: LogEntry[]): PortLike {
  const decoder = new Decoder();
  return {
    postMessage(m: unknown, transfer?: readonly ArrayBuffer[]) {
      const w = m as { ftlog?: string; chunk?: Uint8Array };
      if (w.ftlog === 'data' && w.chunk) entries.push(...decoder.push(w.chunk.slice()));
      port.postMessage(m, transfer as ArrayBuffer[] | undefined);
    },
    on: (event: 'message' | 'close', listener: (value?: unknown) => void) => port.on(event as 'message', listener),
    off: (event: 'message' | 'close', listener: (value?: unknown) => void) => port.off(event as 'message', listener),
    close: () => port.close(),
  };
}

interface Run {
  outcome: string;
  outputs: number;
  batches: number;
  /** The icount each slice (Machine.step) ended at. */
  sliceEnds: number[];
  /** The slice each output was produced in. */
  outputSlice: number[];
  markers: (LogEntry & { type: 'output' })[];
  /** Each release, with the ack the primary had heard by then. */
  releases: { index: number; ackedSeq: number }[];
  posted: number;
  received: number;
}

async function runPrimary(guest: string): Promise<Run> {
  const machine = new Machine({ env: new LiveEnv() });
  machine.loadElf(readFileSync(guestPath(guest)));
  const sliceEnds: number[] = [];
  const step = machine.step.bind(machine);
  machine.step = (max: number, soft?: boolean) => {
    const r = step(max, soft);
    sliceEnds.push(machine.icount);
    return r;
  };
  const posted: LogEntry[] = [];
  const { port1, port2 } = new MessageChannel();
  // ownsPort: both ends are polled between the primary's slices, as in a worker pair.
  const primaryEnd = createPortPrimary(decodingPort(port1, posted), { ownsPort: true });
  const backupEnd = createPortBackup(port2, { ownsPort: true });
  let received = 0;
  const acking = backupEnd.backup.entries$.subscribe((e) => {
    received++;
    backupEnd.backup.ack(e.seq);
  });
  // chainMs 1: a worker pair's primary (runtime/pair.ts WORKER_PRIMARY_CHAIN_MS).
  const node = new PrimaryNode({ name: 'p', pairId: 'slices', generation: 1, machine, arbiter: new InProcessArbiter(), channel: primaryEnd.primary, chainMs: 1 });
  const outputSlice: number[] = [];
  const onOutput = machine.onOutput!;
  machine.onOutput = (o: Output) => {
    outputSlice.push(sliceEnds.length);
    onOutput(o);
  };
  const releases: { index: number; ackedSeq: number }[] = [];
  const sub = node.released$.subscribe((r) => releases.push({ index: r.index, ackedSeq: primaryEnd.primary.ackedSeq }));
  try {
    const outcome = await node.run();
    // The last entry posted (the run's final progress) may still be on its way to the backup end.
    for (let i = 0; i < 200 && received < posted.length; i++) await new Promise((r) => setTimeout(r, 10));
    const stats = node.stats();
    const markers = posted.filter((e): e is LogEntry & { type: 'output' } => e.type === 'output');
    return { outcome: outcome.reason, outputs: stats.outputs, batches: stats.batches, sliceEnds, outputSlice, markers, releases, posted: posted.length, received };
  } finally {
    sub.unsubscribe();
    acking.unsubscribe();
  }
}

/**
 * Every output's marker is logged at the icount where the slice that produced the marker's
 * last output ended (the chain never went past a slice with an output), and counts exactly the
 * outputs produced up to it; every output leaves in order, only once the primary has heard the
 * ack of its marker (output rule); the backup end received every entry posted.
 */
function checkOutputRule(r: Run): void {
  expect(r.outcome).toBe('halt');
  expect(r.outputSlice.length).toBe(r.outputs);
  let covered = 0;
  for (const m of r.markers) {
    expect(m.count).toBeGreaterThan(covered);
    const lastSlice = r.outputSlice[m.count - 1]!;
    expect(m.icount).toBe(r.sliceEnds[lastSlice]);
    // No output of the next marker was produced in a slice up to this one.
    if (m.count < r.outputSlice.length) expect(r.outputSlice[m.count]!).toBeGreaterThan(lastSlice);
    covered = m.count;
  }
  expect(covered).toBe(r.outputs);
  expect(r.releases.map((x) => x.index)).toEqual(Array.from({ length: r.outputs }, (_, i) => i));
  for (const x of r.releases) {
    const marker = r.markers.find((m) => m.count > x.index)!;
    expect(x.ackedSeq).toBeGreaterThanOrEqual(marker.seq);
  }
  expect(r.received).toBe(r.posted);
}

describe('a primary chains the slices of one CPU batch', () => {
  it('bench-timer: several slices a batch, one chart event each batch', async () => {
    const r = await runPrimary('bench-timer');
    expect(r.outputs).toBeGreaterThan(100);
    // One slice a batch before the chain (every slice took a chart event, an onBatch and two
    // microtask hops); now the slices of a chain are one batch: measured 8–10 a batch
    // (bench/primary-batches.mjs); a loaded host turns more often and chains fewer.
    expect(r.batches).toBeGreaterThan(0);
    expect(r.sliceEnds.length).toBeGreaterThanOrEqual(2 * r.batches);
    checkOutputRule(r);
  }, 60_000);

  it('seq-mid: a batch ends at the slice of its outputs, and each output waits for its marker\'s ack', async () => {
    const r = await runPrimary('seq-mid');
    expect(r.outputs).toBeGreaterThan(1000);
    checkOutputRule(r);
  }, 60_000);
});
