// The ack clock (runtime/ft/primary-node.ts, MARKER_HOLD_MS): while a marker the primary sent
// is unacknowledged, the next answers' markers wait for its ack and then leave together, in
// one chunk released by one ack; with nothing unacknowledged a marker leaves at once. The real
// primary node runs the dns guest with a real disk and a real UDP forward, logging over a real
// port channel (a MessageChannel in this thread, as a worker pair's) to its real backup end.
// The test plays the backup's acks by hand, and decodes every chunk the primary end posts.
import { readFileSync } from 'node:fs';
import { createSocket, type Socket } from 'node:dgram';
import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { createPortBackup, createPortPrimary } from '../../runtime/channel/port.js';
import { countingPort, dnsOnPortChannel, query } from '../helpers/dns-channel.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { PrimaryNode, type PrimaryNodeOptions } from '../../runtime/ft/primary-node.js';
import { guestPath } from '../../runtime/guests.js';
import type { LogEntry } from '../../runtime/log/entry.js';
import { Machine } from '../../runtime/machine.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';

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
  const { port, machine, chunks, primaryEnd, backupEnd, dispose } = await dnsOnPortChannel('ftvm-ackclock-');
  const r = {
    autoAck: true,
    machine,
    primaryEnd,
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
    await dispose();
  };
  // The guest reads its zone and binds port 53 first: the first query may need a retry.
  for (let i = 0; !r.answers.includes(1); i++) {
    if (i > 100) throw new Error('the dns guest never answered');
    r.ask([1]);
    await sleep(100);
  }
  return r;
}

/**
 * Once everything so far is acknowledged, the test plays the backup's acks: query 2 is asked
 * and its answer's marker posted (with nothing unacknowledged, no ack is needed for that).
 * Returns the chunk count before the query.
 */
async function firstUnackedAnswer(r: Awaited<ReturnType<typeof rig>>): Promise<number> {
  await until('the backup to ack all', () => r.node.stats().held === 0 && r.node.unreleased() === 0);
  await sleep(20);
  r.autoAck = false;
  const before = r.chunks.length;
  r.ask([2]);
  await until('query 2\'s marker to be posted', () => r.chunks.slice(before).some((c) => markers(c).length > 0));
  return before;
}

describe('the ack clock: answers computed while a marker is unacknowledged share one chunk and one ack', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  it('a marker with nothing unacknowledged leaves at once; answers computed while it is unacknowledged share one chunk and one ack', async () => {
    // No time bound to speak of: only the ack, or the guest going to sleep, sends held
    // markers; and a window of one marker in flight, so that the first answer of the burst
    // waits too (with the default two it would leave alone).
    const r = await rig({ markerHoldMs: 60_000, markerWindow: 1 });
    close = r.close;
    // Nothing unacknowledged: query 2's answer's marker is posted without any ack coming.
    let before = await firstUnackedAnswer(r);
    const first = r.chunks.slice(before).find((c) => markers(c).length > 0)!;
    const firstMarker = markers(first).at(-1)!;
    await sleep(20);
    expect(r.answers).not.toContain(2); // held by the output rule: not acked yet

    // Four queries at once while that marker is unacknowledged (sent in one go, so the guest
    // takes them in one wake-up): their answers' markers wait while the guest runs on, and
    // leave together when it goes to sleep: one chunk, where each answer's batch end used to
    // send its own.
    before = r.chunks.length;
    r.ask([3, 4, 5, 6]);
    await until('the guest to answer 3..6', () => r.node.stats().outputs >= firstMarker.count + 4);
    await until('their markers to be posted', () => r.chunks.slice(before).flatMap(markers).some((m) => m.count >= firstMarker.count + 4));
    await sleep(50);
    const sent = r.chunks.slice(before).filter((c) => markers(c).length > 0);
    expect(sent).toHaveLength(1);
    expect(markers(sent[0]!).at(-1)!.count).toBe(firstMarker.count + 4);
    expect(r.node.stats().held).toBe(5);
    expect(r.answers.filter((id) => id >= 2)).toEqual([]);

    // One ack, of everything received, releases all five answers.
    const acksBefore = r.node.stats().acks;
    const eventsBefore = r.node.stats().chartEvents;
    await until('the backup to receive the chunk', () => r.received.at(-1)!.seq >= sent[0]!.at(-1)!.seq);
    r.ack(r.received.at(-1)!.seq);
    await until('answers 2..6', () => [2, 3, 4, 5, 6].every((id) => r.answers.includes(id)));
    expect(r.node.stats().acks - acksBefore).toBe(1);
    expect(r.node.stats().held).toBe(0);
    // That one ack was one step of the primary chart, which released the five.
    expect(r.node.stats().chartEvents - eventsBefore).toBe(1);
    // An ack that covers no held output (query 7's marker acked, then a plain entry's ack) is
    // no chart step: the chart has nothing to decide.
    r.ask([7]);
    await until('answer 7 to be held', () => r.node.stats().held === 1);
    await until('its marker to arrive', () => r.received.some((e) => e.type === 'output' && e.count >= firstMarker.count + 5));
    const events7 = r.node.stats().chartEvents;
    r.ack(r.received.at(-1)!.seq);
    await until('answer 7', () => r.answers.includes(7));
    expect(r.node.stats().chartEvents - events7).toBe(1);
    const acks7 = r.node.stats().acks;
    r.autoAck = true;
    r.ask([8]);
    await until('answer 8', () => r.answers.includes(8));
    await until('the acks of 8', () => r.node.stats().held === 0 && r.node.stats().acks > acks7);
    await sleep(50);
    const s8 = r.node.stats();
    expect(s8.chartEvents - events7 - 1).toBeLessThanOrEqual(s8.acks - acks7);
    expect(s8.chartEvents - events7 - 1).toBe(1);
  }, 60_000);

  it('a console guest with a real acking backup: the clock holds none of its markers, and every output leaves after its marker\'s ack', async () => {
    // seq-short prints 50 lines (each a burst of console bytes, one output each) and computes
    // between them; the backup end acks every entry on receipt, as a backup node does. Even
    // with a window of one marker in flight, console markers leave at their batch end: a
    // line's bytes already share a slice's marker, and holding the next line behind an ack
    // only delayed it (the clock holds network outputs only).
    const machine = new Machine({ env: new LiveEnv() });
    machine.loadElf(readFileSync(guestPath('seq-short')));
    const chunks: LogEntry[][] = [];
    const { port1, port2 } = new MessageChannel();
    const primaryEnd = createPortPrimary(countingPort(port1, chunks), { ownsPort: true });
    const backupEnd = createPortBackup(port2, { ownsPort: true });
    const acking = backupEnd.backup.entries$.subscribe((e) => backupEnd.backup.ack(e.seq));
    const node = new PrimaryNode({ name: 'p', pairId: 'ackclock-seq', generation: 1, machine, arbiter: new InProcessArbiter(), channel: primaryEnd.primary, markerWindow: 1 });
    // Each output, when released, with the acknowledged seq at that moment.
    const releases: { index: number; ackedSeq: number }[] = [];
    node.released$.subscribe((o) => releases.push({ index: o.index, ackedSeq: primaryEnd.primary.ackedSeq }));
    close = async () => {
      acking.unsubscribe();
    };
    const outcome = await node.run();
    expect(outcome.reason).toBe('halt');
    const s = node.stats();
    const marks = chunks.flat().filter((e): e is Extract<LogEntry, { type: 'output' }> => e.type === 'output');
    const markerChunks = chunks.filter((c) => c.some((e) => e.type === 'output')).length;
    // Every output left, in order, and only once the marker covering it was acknowledged.
    expect(releases.map((r) => r.index)).toEqual(Array.from({ length: s.outputs }, (_, i) => i));
    for (const r of releases) {
      const covering = marks.find((m) => m.count > r.index)!;
      expect(r.ackedSeq).toBeGreaterThanOrEqual(covering.seq);
    }
    // No marker waited for an ack; a line's bytes share a few chunks, not one each.
    expect(s.clockedSends).toBe(0);
    expect(markerChunks).toBeLessThan(s.outputs / 4);
    expect(s.acks).toBeLessThan(s.outputs / 4);
  }, 60_000);

  it('answers to queries that wait together share a chunk though the backup acks at once: the guest still had them to read', async () => {
    // The default window of two, and a backup end that acks every entry on receipt, as a
    // backup on a core or host of its own does: the window never fills. What holds the
    // markers is the queries behind the one answered (MachineIo.netInputInHand); they leave
    // when the guest has read them all and sleeps.
    const r = await rig({ markerHoldMs: 60_000 });
    close = r.close;
    await until('the backup to ack all', () => r.node.stats().held === 0 && r.node.unreleased() === 0);
    await sleep(20);
    // An idle guest has every receive buffer posted: nothing in hand.
    expect(r.machine.io!.netInputInHand).toBe(false);
    // What the hint says as each answer is produced (the frame being answered is not "in hand").
    const inHand: boolean[] = [];
    const onOutput = r.machine.onOutput;
    r.machine.onOutput = (o) => {
      if (o.kind === 'net') inHand.push(r.machine.io!.netInputInHand);
      onOutput(o);
    };
    r.ask([9]);
    await until('answer 9', () => r.answers.includes(9));
    // One query: nothing more to read when its answer is produced, so its marker need not wait for the guest's sleep.
    expect(inHand).toEqual([false]);
    inHand.length = 0;
    const releases: { index: number; ackedSeq: number }[] = [];
    const sub = r.node.released$.subscribe((o) => releases.push({ index: o.index, ackedSeq: r.primaryEnd.primary.ackedSeq }));
    const ids = [10, 11, 12, 13, 14, 15, 16, 17];
    const before = r.chunks.length;
    const outputsBefore = r.node.stats().outputs;
    // One go: the primary's socket reads all eight in one turn (this thread sends them first).
    r.ask(ids);
    await until('the eight answers', () => ids.every((id) => r.answers.includes(id)));
    sub.unsubscribe();
    const markerChunks = r.chunks.slice(before).filter((c) => markers(c).length > 0);
    // Without the rule each answer's batch end sent its marker (8 chunks, the acks kept the window open).
    expect(markerChunks.length).toBeLessThanOrEqual(2);
    expect(markers(markerChunks.at(-1)!).at(-1)!.count).toBe(outputsBefore + 8);
    // The output rule: each answer left only once the marker covering it was acknowledged.
    const marks = r.chunks.flat().filter((e): e is Extract<LogEntry, { type: 'output' }> => e.type === 'output');
    expect(releases.map((x) => x.index)).toEqual(Array.from({ length: 8 }, (_, i) => outputsBefore + i));
    for (const x of releases) expect(x.ackedSeq).toBeGreaterThanOrEqual(marks.find((m) => m.count > x.index)!.seq);
    // The first answers had the rest behind them; the last had nothing more.
    expect(inHand.length).toBe(8);
    expect(inHand[0]).toBe(true);
    expect(inHand.at(-1)).toBe(false);
    await until('the guest to read everything', () => !r.machine.io!.netInputInHand);
  }, 60_000);

  it('a guest that goes to sleep after its answer sends the held marker at once, unacknowledged', async () => {
    const r = await rig({ markerHoldMs: 60_000 });
    close = r.close;
    let before = await firstUnackedAnswer(r);
    // Query 2's marker is unacknowledged; query 3's answer has nothing to share a chunk with
    // once the guest sleeps: its marker leaves without the ack (and without the bound).
    before = r.chunks.length;
    r.ask([3]);
    await until('query 3\'s marker to be posted', () => r.chunks.slice(before).some((c) => markers(c).length > 0), 5_000);
    // Still held: the output rule waits for the ack, whatever the clock did.
    await sleep(20);
    expect(r.answers.filter((id) => id >= 2)).toEqual([]);
    r.autoAck = true;
    r.ack(r.received.at(-1)!.seq);
    await until('answers 2 and 3', () => r.answers.includes(2) && r.answers.includes(3));
  }, 60_000);
});
