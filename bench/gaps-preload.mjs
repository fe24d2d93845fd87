// Preloaded into ftvm processes by bench/detect.mjs (NODE_OPTIONS=--import) next to
// eld-preload.mjs: records, on the wall clock both sides share, the gaps over 20 ms between
// this process's writes to the log channel's TLS socket (what it sent: log entries and
// heartbeats on a primary, acks on a backup) and between its reads from it (what it
// received), the gaps between its heartbeat datagrams sent and received (where the node has
// a heartbeat link), and its suspicion lines. Written to $FTVM_GAPS_DIR/<role>-<pid>.json at
// exit. Changes nothing in the process but a time stamp per write and per read.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import dgram from 'node:dgram';

const dir = process.env.FTVM_GAPS_DIR;
const MIN_GAP_MS = 20;
if (dir) {
  const { isMainThread, threadId, workerData } = await import('node:worker_threads');
  // A heartbeat link's thread is told its role; the main thread's is on the command line.
  const role = (isMainThread ? undefined : workerData?.role) ?? process.argv.find((a) => a === 'primary' || a === 'backup') ?? 'other';
  const wall = () => performance.timeOrigin + performance.now();
  /** One stream of events: counts them and keeps the gaps over MIN_GAP_MS as [start, length]. */
  const stream = () => {
    const s = { n: 0, last: 0, gaps: [] };
    s.mark = () => {
      const now = wall();
      if (s.n > 0 && now - s.last > MIN_GAP_MS) s.gaps.push([Math.round(s.last), Math.round(now - s.last)]);
      s.last = now;
      s.n++;
    };
    return s;
  };
  const sent = stream();
  const received = stream();
  const write = tls.TLSSocket.prototype.write;
  tls.TLSSocket.prototype.write = function (...args) {
    sent.mark();
    return write.apply(this, args);
  };
  const emit = tls.TLSSocket.prototype.emit;
  tls.TLSSocket.prototype.emit = function (name, ...args) {
    if (name === 'data') received.mark();
    return emit.call(this, name, ...args);
  };
  // Heartbeat datagrams (runtime/channel/heartbeat.ts), in whichever thread sends them.
  const beatsSent = stream();
  const beatsReceived = stream();
  const send = dgram.Socket.prototype.send;
  dgram.Socket.prototype.send = function (...args) {
    beatsSent.mark();
    return send.apply(this, args);
  };
  const demit = dgram.Socket.prototype.emit;
  dgram.Socket.prototype.emit = function (name, ...args) {
    if (name === 'message') beatsReceived.mark();
    return demit.call(this, name, ...args);
  };
  const lines = [];
  const errWrite = process.stderr.write;
  process.stderr.write = function (chunk, ...args) {
    const text = String(chunk);
    if (/suspect|claim|live|lost|won/i.test(text)) lines.push([Math.round(wall()), text.trim()]);
    return errWrite.call(this, chunk, ...args);
  };
  process.on('exit', () => {
    const out = (s) => ({ n: s.n, gaps: s.gaps });
    writeFileSync(join(dir, `${role}-${process.pid}${isMainThread ? '' : `-t${threadId}`}.json`), JSON.stringify({
      role, thread: isMainThread ? 'main' : 'worker', sent: out(sent), received: out(received),
      beatsSent: out(beatsSent), beatsReceived: out(beatsReceived), lines,
    }));
  });
}
