// The ack clock (runtime/ft/primary-node.ts, MARKER_HOLD_MS): while a marker the primary sent
// is unacknowledged, the next answers' markers wait for its ack and then leave together, in
// one chunk released by one ack; with nothing unacknowledged a marker leaves at once. The real
// primary node runs the dns guest with a real disk and a real UDP forward, logging over a real
// port channel (a MessageChannel in this thread, as a worker pair's) to its real backup end.
// The test plays the backup's acks by hand, and decodes every chunk the primary end posts.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createSocket, type Socket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { createPortBackup, createPortPrimary, type PortLike } from '../../runtime/channel/port.js';
import { Decoder } from '../../runtime/log/codec.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { PrimaryNode, type PrimaryNodeOptions } from '../../runtime/ft/primary-node.js';
import { guestPath } from '../../runtime/guests.js';
import { openIo } from '../../runtime/io/open.js';
import type { LogEntry } from '../../runtime/log/entry.js';
import { Machine } from '../../runtime/machine.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';

/** The primary's side of a MessageChannel, decoding each chunk it posts (before the transfer detaches it). */
function countingPort(port: MessageChannel['port1'], chunks: LogEntry[][]): PortLike {
  const decoder = new Decoder();
  return {
    postMessage(m: unknown, transfer?: readonly ArrayBuffer[]) {
      const w = m as { ftlog?: string; chunk?: Uint8Array };
      if (w.ftlog === 'data' && w.chunk) chunks.push([...decoder.push(w.chunk.slice())]);
      port.postMessage(m, transfer as ArrayBuffer[] | undefined);
    },
    on: (event: 'message' | 'close', listener: (value?: unknown) => void) => port.on(event as 'message', listener),
    off: (event: 'message' | 'close', listener: (value?: unknown) => void) => port.off(event as 'message', listener),
    close: () => port.close(),
  };
}

function query(id: number): Buffer {
  const labels = 'www.example.test'.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const markers = (c: LogEntry[]) => c.filter((e): e is Extract<LogEntry, { type: 'output' }> => e.type === 'output' && e.kind === 'net');

/**
 * A dns primary whose backup end acks only when told (or every entry on receipt while
 * `autoAck`). Heartbeats, digests and suspicion are pushed out of the test's way: only the
 * ack clock and its bound decide when a marker leaves.
 */
async function rig(opts: Partial<PrimaryNodeOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-ackclock-'));
  const disk = join(dir, 'zone.img');
  copyFileSync(join(dirname(guestPath('dns')), 'zone.img'), disk);
  const io = await openIo({ disk: `file:${disk}`, net: ['udp:127.0.0.1:0:53'] });
  const port = io.udp!.boundPorts[0]!;
  const machine = new Machine({ env: new LiveEnv(), ...(io.disk ? { disk: io.disk } : {}), ...(io.net ? { net: io.net } : {}) });
  machine.loadElf(readFileSync(guestPath('dns')));
  const chunks: LogEntry[][] = [];
  const { port1, port2 } = new MessageChannel();
  const primaryEnd = createPortPrimary(countingPort(port1, chunks), { ownsPort: true });
  const backupEnd = createPortBackup(port2, { ownsPort: true });
  const r = {
    autoAck: true,
    received: [] as LogEntry[],
    chunks,
    answers: [] as number[],
    ack: (seq: number) => backupEnd.backup.ack(seq),
    node: undefined as unknown as PrimaryNode,
    client: undefined as unknown as Socket,
    ask: (ids: number[]) => { for (const id of ids) r.client.send(query(id), port, '127.0.0.1'); },
    close: async () => undefined as void,
  };
  const acking = backupEnd.backup.entries$.subscribe((e) => {
    r.received.push(e);
    if (r.autoAck) backupEnd.backup.ack(e.seq);
  });
  const node = new PrimaryNode({
    name: 'p', pairId: 'ackclock', generation: 1, machine, arbiter: new InProcessArbiter(), channel: primaryEnd.primary,
    timing: { heartbeatMs: 10_000, suspectMs: 60_000, confirmMs: 60_000, digestEveryMs: 60_000 },
    ...opts,
  });
  r.node = node;
  const run = node.run();
  r.client = createSocket('udp4');
  r.client.on('message', (m: Buffer) => r.answers.push(m.readUInt16BE(0)));
  r.close = async () => {
    r.client.close();
    acking.unsubscribe();
    node.crash('test over');
    await run;
    await machine.io?.close();
    await io.close();
    rmSync(dir, { recursive: true, force: true });
  };
  // The guest reads its zone and binds port 53 first: the first query may need a retry.
  for (let i = 0; !r.answers.includes(1); i++) {
    if (i > 100) throw new Error('the dns guest never answered');
    r.ask([1]);
    await sleep(100);
  }
  return r;
}

describe('the ack clock: answers computed while a marker is unacknowledged share one chunk and one ack', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  it('a marker with nothing unacknowledged leaves at once; the next ones wait for its ack and leave together', async () => {
    // No bound to speak of: only the ack releases the held markers.
    const r = await rig({ markerHoldMs: 60_000 });
    close = r.close;
    // Everything so far acknowledged; from here the test plays the backup's acks.
    await until('the backup to ack all', () => r.node.stats().held === 0 && r.node.unreleased() === 0);
    await sleep(20);
    r.autoAck = false;

    // Nothing unacknowledged: query 2's answer's marker is posted without any ack coming.
    let before = r.chunks.length;
    r.ask([2]);
    await until('query 2\'s marker to be posted', () => r.chunks.slice(before).some((c) => markers(c).length > 0));
    const first = r.chunks.slice(before).find((c) => markers(c).length > 0)!;
    const firstMarker = markers(first).at(-1)!;
    expect(r.answers).not.toContain(2); // held by the output rule: not acked yet

    // Four more queries while that marker is unacknowledged: answered by the guest, held in the
    // gate, and their markers not posted (any chunk posted meanwhile carries no marker).
    before = r.chunks.length;
    r.ask([3, 4, 5, 6]);
    await until('the guest to answer 3..6', () => r.node.stats().outputs >= firstMarker.count + 4);
    await sleep(50);
    expect(r.chunks.slice(before).flatMap(markers)).toEqual([]);
    expect(r.node.stats().held).toBe(5);
    expect(r.answers.filter((id) => id >= 2)).toEqual([]);

    // One ack of query 2's marker: answer 2 leaves, and the four held markers go out in one chunk.
    const acksBefore = r.node.stats().acks;
    before = r.chunks.length;
    r.ack(r.received.at(-1)!.seq);
    await until('answer 2', () => r.answers.includes(2));
    await until('the held markers to be posted', () => r.chunks.slice(before).some((c) => markers(c).length > 0));
    await sleep(50);
    const sent = r.chunks.slice(before).filter((c) => markers(c).length > 0);
    expect(sent).toHaveLength(1);
    expect(markers(sent[0]!).at(-1)!.count).toBe(firstMarker.count + 4);
    expect(r.answers.filter((id) => id >= 3)).toEqual([]);

    // One ack for that chunk releases all four answers.
    await until('the backup to receive the chunk', () => r.received.at(-1)!.seq >= sent[0]!.at(-1)!.seq);
    r.ack(r.received.at(-1)!.seq);
    await until('answers 3..6', () => [3, 4, 5, 6].every((id) => r.answers.includes(id)));
    expect(r.node.stats().acks - acksBefore).toBe(2);
    expect(r.node.stats().held).toBe(0);
    expect(r.node.stats().clockedSends).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('a marker waits for the ack of the one before it only so long: its bound sends it without that ack', async () => {
    // The bound is looked at when a batch ends and at each heartbeat: a guest that sleeps
    // after its answer ends no batch, so the heartbeat (here every 100 ms) bounds the wait.
    const r = await rig({ markerHoldMs: 30, timing: { heartbeatMs: 100, suspectMs: 60_000, confirmMs: 60_000, digestEveryMs: 60_000 } });
    close = r.close;
    await until('the backup to ack all', () => r.node.stats().held === 0 && r.node.unreleased() === 0);
    await sleep(20);
    r.autoAck = false;
    let before = r.chunks.length;
    r.ask([2]);
    await until('query 2\'s marker to be posted', () => r.chunks.slice(before).some((c) => markers(c).length > 0));
    before = r.chunks.length;
    const t0 = performance.now();
    r.ask([3]);
    // Never acked: query 3's marker still leaves, after its bound and by the next heartbeat.
    await until('query 3\'s marker to be posted', () => r.chunks.slice(before).some((c) => markers(c).length > 0), 5_000);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(30);
    // Still held: the output rule waits for the ack, whatever the clock did.
    expect(r.answers.filter((id) => id >= 2)).toEqual([]);
    r.autoAck = true;
    r.ack(r.received.at(-1)!.seq);
    await until('answers 2 and 3', () => r.answers.includes(2) && r.answers.includes(3));
  }, 60_000);
});
