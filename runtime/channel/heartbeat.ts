// The heartbeat link between the two processes of a pair (issue 14; docs/BENCHMARKS.md,
// "Detection, third pass"). The log channel alone is a poor heartbeat on a loaded host: the
// primary's entries are sent, and the backup's acks read and written, by the thread that
// runs (or replays) the guest, and a loaded scheduler denies a thread that computes without
// pause its core for hundreds of ms, seconds at load 20, while the process is alive. So each
// node also runs a small thread that sleeps between beats (heartbeat-worker.ts): every
// beatMs it sends its peer a 38-byte UDP datagram, authenticated with keying material of the
// channel's own TLS session (heartbeat-wire.ts), and it stamps the peer's beats into shared
// memory as they arrive. A sleeping thread is woken promptly even on a loaded host.
//
// What a beat proves: the peer of this very channel session is alive and reachable, and its
// main thread turned within hangMs. What it does not: the watchdog (watchdog.ts) counts a
// beat as hearing the peer, next to the log itself; suspicion and what follows stay the
// charts' (machines/backup.machine.ts, primary.machine.ts): claim on the arbiter, only the
// winner goes live. A kill -9 ends both the channel and the beats; a cut stops both.
//
// The primary's link listens on its channel's port number, UDP; the backup's sends there from
// any port, and the primary answers the address its backup's good beats come from. Anything
// else arriving (garbage, another session's or pair's beats, a replay) gets one `ftvm:` line
// (at most one a second, the rest counted) and changes nothing. Where UDP cannot pass, no
// beat is heard and detection is the log's alone, as before.
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../ft/remote-backup.js';
import { BEAT_KEY_BYTES, BEAT_KEY_LABEL, type BeatRole } from './heartbeat-wire.js';
import { GAP_PEAK, HEARD_AT, HEARD_COUNT, MAIN_AT, registerBeats, SENT_COUNT, SESSION, SLOTS, type LinkInit, type LinkReport, type PeerBeats } from './heartbeat-shared.js';
export { peerBeats, type PeerBeats } from './heartbeat-shared.js';


/** A channel end whose TLS session can give keying material (runtime/channel/tcp.ts). */
export interface KeyedEnd {
  exportKey(label: string, bytes: number): Buffer | undefined;
}

/** How often a beat leaves (ms): the log's own heartbeat period. */
export const BEAT_MS = 5;
/**
 * A node whose main thread has not turned for this long stops beating: it is hung, not
 * starved (the longest stall a loaded host gave a live process in bench/detect.mjs: 7.1 s).
 */
export const HANG_MS = 10_000;
/** The link thread's nice value, where permitted (heartbeat-worker.ts, raisePriority). */
export const BEAT_NICE = -10;


const workerEntry = (): URL => new URL(import.meta.url.endsWith('.ts') ? './heartbeat-worker.ts' : './heartbeat-worker.js', import.meta.url);

export interface HeartbeatLinkOptions {
  role: BeatRole;
  /** A primary: where its channel listens. A backup: its primary's channel address. */
  host: string;
  port: number;
  beatMs?: number;
  hangMs?: number;
  nice?: number;
  /** Where its lines go (the commands print `ftvm: <role> heartbeat: ...`). */
  say: (line: string) => void;
}

export class HeartbeatLink {
  private readonly worker: Worker;
  private readonly shared: BigInt64Array;
  private readonly stamp: NodeJS.Timeout;
  private session = 0;
  private closed = false;
  /** Resolves with the UDP port bound and whether the thread runs at BEAT_NICE, or undefined if the link could not start. */
  readonly ready: Promise<{ port: number; raised: boolean } | undefined>;

  constructor(readonly opts: HeartbeatLinkOptions) {
    const say = opts.say;
    const beatMs = opts.beatMs ?? BEAT_MS;
    const sab = new SharedArrayBuffer(SLOTS * 8);
    this.shared = new BigInt64Array(sab);
    Atomics.store(this.shared, MAIN_AT, process.hrtime.bigint());
    // The main thread shows it turns (see HANG_MS); an unref'd timer, one store.
    this.stamp = setInterval(() => Atomics.store(this.shared, MAIN_AT, process.hrtime.bigint()), beatMs);
    this.stamp.unref();
    const init: LinkInit = { role: opts.role, host: opts.host, port: opts.port, beatMs, hangMs: opts.hangMs ?? HANG_MS, nice: opts.nice ?? BEAT_NICE, shared: sab };
    this.worker = startModuleWorker(workerEntry(), { workerData: init });
    this.worker.unref();
    let settle!: (r: { port: number; raised: boolean } | undefined) => void;
    this.ready = new Promise((r) => { settle = r; });
    this.worker.on('message', (m: LinkReport) => {
      if (m.type === 'ready') settle({ port: m.port, raised: m.raised });
      else if (m.type === 'bad') say(m.line);
      else {
        say(`off (${m.message}): failure detection watches the log channel only`);
        settle(undefined);
      }
    });
    this.worker.on('error', (e) => {
      say(`off (${e.message}): failure detection watches the log channel only`);
      settle(undefined);
    });
    this.worker.on('exit', () => settle(undefined));
  }

  /**
   * Watch `end`'s peer from now on: once `up` resolves (the TLS session is there), the link
   * beats with that session's key and counts only its peer's beats; `down` resolving (the end
   * closed or failed) stops that. A later `watch` replaces this one (a primary's next backup).
   */
  watch(end: KeyedEnd & object, up: Promise<unknown>, down?: Promise<unknown>): PeerBeats {
    const session = ++this.session;
    const current = (): boolean => !this.closed && session === this.session;
    up.then(() => {
      if (!current()) return;
      let key: Buffer | undefined;
      try {
        key = end.exportKey(BEAT_KEY_LABEL, BEAT_KEY_BYTES);
      } catch {
        key = undefined;
      }
      this.worker.postMessage({ type: 'session', session, key });
    }, () => undefined);
    down?.then(() => {
      if (current()) this.worker.postMessage({ type: 'session', session: ++this.session, key: undefined });
    }, () => undefined);
    const beats: PeerBeats = {
      sinceHeardMs: () => {
        if (Atomics.load(this.shared, SESSION) !== BigInt(session)) return Infinity;
        const at = Atomics.load(this.shared, HEARD_AT);
        return at === 0n ? Infinity : Number(process.hrtime.bigint() - at) / 1e6;
      },
      gapPeakMs: () => Number(Atomics.load(this.shared, GAP_PEAK)) / 1e6,
    };
    registerBeats(end, beats);
    return beats;
  }

  stats(): { sent: number; heard: number } {
    return { sent: Number(Atomics.load(this.shared, SENT_COUNT)), heard: Number(Atomics.load(this.shared, HEARD_COUNT)) };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.stamp);
    this.worker.postMessage({ type: 'close' });
    void this.worker.terminate();
  }
}
