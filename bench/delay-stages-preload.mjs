// Preloaded into `ftvm primary` and `ftvm backup` by bench/delay-stages.mjs
// (NODE_OPTIONS=--import, FTVM_STAGES_FILE set): stamps every output marker at each stage of
// the output rule's round trip, across the two processes, and at exit appends one JSON line
// per thread to $FTVM_STAGES_FILE. Nothing in the product changes: this file wraps methods
// of the classes the process loaded (the same dist modules, found beside its bin/ftvm.js, so
// it traces whichever tree runs it) and is not loaded at all when the variable is unset.
//
// The clock is process.hrtime (CLOCK_MONOTONIC), shared by every process on one host, in µs.
//
// primary: produced (the batch's first output, machine.onOutput), held (OutputGate.hold: the
//   marker appended; the bench's delay starts here; `outputs` = how many it holds), sent (PrimaryCore.send of the marker),
//   written (the flush that put it on the socket), ackRead (PrimaryCore.ack covering it),
//   released (OutputGate.acked let it out).
// backup: read (BackupCore.chunk: the bytes reached the channel core; with the socket thread,
//   also `threadRead`: the socket thread's data event), decoded (Decoder.push returned it),
//   taken (BackupNode.applyEntries: the chart's action; `behind` = instructions the replay had
//   still to run to reach the marker; `idle`: it stood at its horizon), ackAsked (BackupCore.ack covering it; `kind` receipt
//   or replayed: ReplayBacklog held acks to the replay), ackWritten (the ack frame to the
//   transport; with the socket thread also `threadWrote`).
// Both: batch lengths in µs (first Machine.step → BatchSlicer.ended), sliced or whole, and
// the event-loop turns asked for (setImmediate calls).
import { appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainThread, workerData } from 'node:worker_threads';
import { mainThreadSchedstat } from './lib/schedstat.mjs';

const file = process.env.FTVM_STAGES_FILE;
const now = () => {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3;
};

if (file && isMainThread) {
  const role = process.argv.find((a) => a === 'primary' || a === 'backup') ?? 'other';
  const root = dirname(dirname(process.argv[1]));
  const load = (p) => import(pathToFileURL(join(root, 'dist', p)).href);
  const [{ PrimaryCore, BackupCore }, { Decoder }, { OutputGate }, { PrimaryNode }, { BackupNode }, { ReplayBacklog }, { BatchSlicer }, { Machine }] = await Promise.all([
    load('runtime/channel/core.js'), load('runtime/log/codec.js'), load('runtime/ft/output-gate.js'), load('runtime/ft/primary-node.js'),
    load('runtime/ft/backup-node.js'), load('runtime/ft/replay-backlog.js'), load('runtime/ft/batch-slice.js'), load('runtime/machine.js'),
  ]);
  /** seq of an output marker → its stamps. */
  const markers = new Map();
  const rec = (seq) => {
    let r = markers.get(seq);
    if (!r) markers.set(seq, (r = { seq }));
    return r;
  };
  /** Markers not yet past a stage, oldest first: a stage that covers `seq` stamps them all. */
  const open = { written: [], ackRead: [], ackAsked: [], ackWritten: [] };
  const stampUpTo = (stage, seq, t, extra) => {
    const q = open[stage];
    let n = 0;
    while (n < q.length && q[n] <= seq) {
      const r = rec(q[n]);
      r[stage] = t;
      if (extra) Object.assign(r, extra);
      n++;
    }
    if (n > 0) q.splice(0, n);
  };
  const batches = { sliced: [], whole: [] };
  let turns = 0;
  const origImmediate = globalThis.setImmediate;
  globalThis.setImmediate = function counted(...args) {
    turns++;
    return origImmediate.apply(this, args);
  };
  // Each batch's start and end on the shared clock, and whether it was sliced: where a stamp
  // fell, inside a batch or between two, is read from these. A batch starts with the first
  // Machine.step after the previous one ended (the slicer's `ended`).
  const timeline = [];
  let batchStart = -1;
  const step = Machine.prototype.step;
  Machine.prototype.step = function (...a) {
    if (batchStart < 0) batchStart = now();
    return step.apply(this, a);
  };
  const ended = BatchSlicer.prototype.ended;
  BatchSlicer.prototype.ended = function () {
    if (batchStart >= 0) {
      const end = now();
      (this.sliced ? batches.sliced : batches.whole).push(Math.round(end - batchStart));
      timeline.push(Math.round(batchStart), Math.round(end), this.sliced ? 1 : 0);
      batchStart = -1;
    }
    return ended.call(this);
  };

  if (role === 'primary') {
    const producedAt = new Map();
    const run = PrimaryNode.prototype.run;
    PrimaryNode.prototype.run = function () {
      const m = this.machine;
      const orig = m.onOutput;
      const node = this;
      m.onOutput = (o) => {
        producedAt.set(node.outputs, now());
        orig(o);
      };
      return run.call(this);
    };
    const hold = OutputGate.prototype.hold;
    OutputGate.prototype.hold = function (index, output, needSeq) {
      const t = now();
      if (!markers.has(needSeq)) {
        const r = rec(needSeq);
        r.held = t;
        r.produced = producedAt.get(index) ?? t;
        open.written.push(needSeq);
        open.ackRead.push(needSeq);
      }
      const r = markers.get(needSeq);
      r.outputs = (r.outputs ?? 0) + 1;
      producedAt.delete(index);
      return hold.call(this, index, output, needSeq);
    };
    const send = PrimaryCore.prototype.send;
    PrimaryCore.prototype.send = function (e) {
      if (e.type === 'output' && markers.has(e.seq)) rec(e.seq).sent = now();
      return send.call(this, e);
    };
    const flush = PrimaryCore.prototype.flush;
    PrimaryCore.prototype.flush = function (...a) {
      const before = this.chunksSent;
      // Every marker handed to send() so far is in this chunk, if one is written.
      let hi = -1;
      for (const s of open.written) if (markers.get(s).sent !== undefined) hi = s;
      const r = flush.apply(this, a);
      if (this.chunksSent !== before && hi >= 0) stampUpTo('written', hi, now());
      return r;
    };
    const ack = PrimaryCore.prototype.ack;
    PrimaryCore.prototype.ack = function (seq) {
      stampUpTo('ackRead', seq, now());
      return ack.call(this, seq);
    };
    const acked = OutputGate.prototype.acked;
    OutputGate.prototype.acked = function (ackedSeq) {
      const seqs = [];
      for (let i = this.head; i < this.queue.length && this.queue[i].needSeq <= ackedSeq; i++) seqs.push(this.queue[i].needSeq);
      const r = acked.call(this, ackedSeq);
      const t = now();
      for (const s of seqs) {
        const m = markers.get(s);
        if (m && m.released === undefined) m.released = t;
      }
      return r;
    };
  } else if (role === 'backup') {
    let chunkAt = 0;
    let chunkEndByte = 0;
    const chunk = BackupCore.prototype.chunk;
    BackupCore.prototype.chunk = function (bytes) {
      chunkAt = now();
      // The stream offset this chunk ends at (the greeting's bytes included): the socket
      // thread's reads are matched to it by the same offset.
      chunkEndByte = this.counts.bytesReceived + bytes.length;
      return chunk.call(this, bytes);
    };
    const push = Decoder.prototype.push;
    Decoder.prototype.push = function (c) {
      const out = push.call(this, c);
      const t = now();
      for (const e of out) {
        if (e.type !== 'output') continue;
        const r = rec(e.seq);
        r.read = chunkAt;
        r.readEnd = chunkEndByte;
        r.decoded = t;
        open.ackAsked.push(e.seq);
        open.ackWritten.push(e.seq);
      }
      return out;
    };
    const apply = BackupNode.prototype.applyEntries;
    BackupNode.prototype.applyEntries = function () {
      const t = now();
      const icount = this.machine.icount;
      // idle: the replay stood at its horizon (it had run everything it had) when these came.
      const idle = icount >= this.env.horizon;
      for (const e of this.arrived) {
        if (e.type === 'output' && markers.has(e.seq)) Object.assign(rec(e.seq), { taken: t, behind: e.icount - icount, idle });
      }
      return apply.call(this);
    };
    let held = false;
    const ackable = ReplayBacklog.prototype.ackable;
    ReplayBacklog.prototype.ackable = function (...a) {
      const r = ackable.apply(this, a);
      held = this.held;
      return r;
    };
    const ack = BackupCore.prototype.ack;
    BackupCore.prototype.ack = function (seq) {
      stampUpTo('ackAsked', seq, now(), { kind: held ? 'replayed' : 'receipt' });
      return ack.call(this, seq);
    };
    const flushAck = BackupCore.prototype.flushAck;
    BackupCore.prototype.flushAck = function (...a) {
      const before = this.sentAck;
      const r = flushAck.apply(this, a);
      if (this.sentAck !== before) stampUpTo('ackWritten', this.sentAck, now(), { ackSeq: this.sentAck });
      return r;
    };
  }
  const schedstat = mainThreadSchedstat;

  const t0 = now();
  process.on('exit', () => {
    // The main thread's CPU time and run-queue wait (runnable, no core), and the wall time.
    const sched = { ...schedstat(), wallMs: (now() - t0) / 1000 };
    appendFileSync(file, JSON.stringify({ role, thread: 'main', pid: process.pid, turns, sched, batches, timeline, markers: [...markers.values()] }) + '\n');
  });
} else if (file && !isMainThread && workerData && typeof workerData === 'object' && 'channel' in workerData && 'key' in workerData) {
  // The backup's socket thread (runtime/channel/socket-thread-worker.ts): when its socket
  // read bytes (by stream offset) and when it wrote each ack.
  const tls = (await import('node:tls')).default;
  const reads = [];
  const acks = [];
  let offset = 0;
  // NOTE a connected client socket has a `write` of its own (not the prototype's): it is
  // wrapped on the instance once the session is up, before the first ack can be written.
  const wrapWrite = (sock) => {
    const write = sock.write;
    sock.write = function (bytes, ...rest) {
      // An ack frame: magic, version, kind 1, the seq as a uvarint, CRC.
      if (bytes instanceof Uint8Array && bytes.length > 4 && bytes[2] === 1) {
        let seq = 0;
        let mul = 1;
        for (let i = 3; i < bytes.length - 4; i++) {
          seq += (bytes[i] & 0x7f) * mul;
          mul *= 128;
          if (bytes[i] < 0x80) break;
        }
        acks.push([seq, now()]);
      }
      return write.call(this, bytes, ...rest);
    };
  };
  const emit = tls.TLSSocket.prototype.emit;
  tls.TLSSocket.prototype.emit = function (ev, chunk, ...rest) {
    if (ev === 'data') {
      offset += chunk.length;
      reads.push([offset, now()]);
    } else if (ev === 'secureConnect') wrapWrite(this);
    return emit.call(this, ev, chunk, ...rest);
  };
  const flushOut = () => {
    if (reads.length + acks.length === 0) return;
    appendFileSync(file, JSON.stringify({ role: 'backup', thread: 'socket', pid: process.pid, reads, acks }) + '\n');
    reads.length = 0;
    acks.length = 0;
  };
  process.on('exit', flushOut);
  // The thread may be terminated rather than exit: write as it goes, too.
  setInterval(flushOut, 200).unref();
}
