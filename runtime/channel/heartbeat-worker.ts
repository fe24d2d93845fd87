// The heartbeat link's thread (runtime/channel/heartbeat.ts says why it exists): it sleeps
// between beats, so a loaded host's scheduler wakes it promptly, and it owns one UDP socket.
// Every beatMs it sends the peer one authenticated datagram (heartbeat-wire.ts), and it
// stamps the arrival of each of the peer's into shared memory, where the node's watchdog
// reads it. It decides nothing: suspicion is the watchdog's and the charts' (DESIGN §3).
import { parentPort, workerData } from 'node:worker_threads';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { BEAT_BYTES, decodeBeat, encodeBeat, sessionTag, type BeatRole } from './heartbeat-wire.js';
import { BEAT_GAP_WINDOW_MS, GAP_PEAK, HEARD_AT, HEARD_COUNT, MAIN_AT, SENT_COUNT, SESSION, type LinkInit, type LinkMessage, type LinkReport } from './heartbeat-shared.js';

const init = workerData as LinkInit;
const shared = new BigInt64Array(init.shared);
const peerRole: BeatRole = init.role === 'primary' ? 'backup' : 'primary';
const port = parentPort!;
const post = (m: LinkReport): void => port.postMessage(m);

let key: Buffer | undefined;
let tag: Buffer | undefined;
/** The tag of the session before this one (see onMessage). */
let formerTag: Buffer | undefined;
let lastSeq = -1n;
let seq = 0n;
/** Where beats go: the primary's listening address (a backup), the sender of the last good beat (a primary). */
let peer: { address: string; port: number } | undefined;
let sock: Socket | undefined;
// The longest gap between the peer's beats, per window (GAP_PEAK).
const WINDOW_NS = BigInt(BEAT_GAP_WINDOW_MS) * 1_000_000n;
let windowAt = process.hrtime.bigint();
let peak = 0n;
let prevPeak = 0n;

// Bad datagrams: one line each, at most one a second; the rest are counted into the next line.
let badAt = -Infinity;
let badMore = 0;
let badTimer: NodeJS.Timeout | undefined;
const bad = (why: string, from: RemoteInfo): void => {
  const now = performance.now();
  if (now - badAt >= 1000) {
    badAt = now;
    post({ type: 'bad', line: `${from.address}:${from.port} sent ${why}; ignored` });
    return;
  }
  badMore++;
  badTimer ??= setTimeout(() => {
    badTimer = undefined;
    post({ type: 'bad', line: `${badMore} more bad heartbeat datagrams in the last second; ignored` });
    badMore = 0;
    badAt = performance.now();
  }, Math.max(1, 1000 - (now - badAt)));
};

const onMessage = (b: Buffer, from: RemoteInfo): void => {
  const got = decodeBeat(b, key, tag, peerRole);
  if (typeof got === 'string') {
    // The peer of the session just ended, still beating or queued: expected, not bad input.
    if (formerTag && b.length === BEAT_BYTES && formerTag.equals(b.subarray(6, 14))) return;
    return bad(got, from);
  }
  if (got <= lastSeq) return bad(`a replayed heartbeat (seq ${got}, last ${lastSeq})`, from);
  lastSeq = got;
  const now = process.hrtime.bigint();
  const prev = Atomics.load(shared, HEARD_AT);
  if (prev !== 0n) {
    if (now - windowAt >= WINDOW_NS) {
      prevPeak = now - windowAt < 2n * WINDOW_NS ? peak : 0n;
      peak = 0n;
      windowAt = now;
    }
    if (now - prev > peak) peak = now - prev;
    Atomics.store(shared, GAP_PEAK, peak > prevPeak ? peak : prevPeak);
  }
  Atomics.store(shared, HEARD_AT, now);
  Atomics.add(shared, HEARD_COUNT, 1n);
  // The primary answers whoever proved to be its backup (and follows it if its address moves).
  if (init.role === 'primary' && (peer?.address !== from.address || peer.port !== from.port)) peer = { address: from.address, port: from.port };
};

const beat = (): void => {
  if (!key || !tag || !peer || !sock) return;
  // A node whose main thread has not turned for hangMs is hung, not starved: no more beats,
  // so its peer's watchdog sees the silence (a stall that long never came from load alone).
  if (process.hrtime.bigint() - Atomics.load(shared, MAIN_AT) > BigInt(init.hangMs) * 1_000_000n) return;
  sock.send(encodeBeat(key, tag, init.role, seq++), peer.port, peer.address, () => undefined);
  Atomics.add(shared, SENT_COUNT, 1n);
};

port.on('message', (m: LinkMessage) => {
  if (m.type === 'session') {
    formerTag = tag ?? formerTag;
    key = m.key ? Buffer.from(m.key) : undefined;
    tag = key ? sessionTag(key) : undefined;
    lastSeq = -1n;
    if (init.role === 'primary') peer = undefined;
    Atomics.store(shared, HEARD_AT, 0n);
    Atomics.store(shared, GAP_PEAK, 0n);
    peak = prevPeak = 0n;
    windowAt = process.hrtime.bigint();
    Atomics.store(shared, SESSION, BigInt(m.session));
  } else if (m.type === 'close') {
    clearInterval(timer);
    clearTimeout(badTimer);
    sock?.close();
    port.close();
  }
});

const timer = setInterval(beat, init.beatMs);

/**
 * This thread at a higher priority where the host lets it (root or CAP_SYS_NICE), as HA
 * daemons run theirs (keepalived, corosync): on Linux a thread has its own nice value, set
 * through its thread id. Measured at load 10 on the 2-core host, a sleeper at nice 0 still
 * woke up to 70-150 ms late now and then (docs/BENCHMARKS.md, "Detection, third pass").
 * Elsewhere it stays at the process's priority; nothing else changes.
 */
function raisePriority(): boolean {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid)) return false;
    setPriority(tid, init.nice);
    return true;
  } catch {
    return false;
  }
}
const raised = init.nice < 0 && raisePriority();

async function open(): Promise<void> {
  const at = await lookup(init.host);
  const s = createSocket({ type: at.family === 6 ? 'udp6' : 'udp4' });
  s.on('message', onMessage);
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    // The primary listens on its channel's port number, UDP; a backup on any free port.
    if (init.role === 'primary') s.bind(init.port, at.address, resolve);
    else s.bind(0, resolve);
  });
  s.on('error', (e) => post({ type: 'error', message: e.message }));
  if (init.role === 'backup') peer = { address: at.address, port: init.port };
  sock = s;
  post({ type: 'ready', port: s.address().port, raised });
}

open().catch((e: Error) => {
  clearInterval(timer);
  post({ type: 'error', message: e.message });
});
