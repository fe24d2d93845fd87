// What the heartbeat link (runtime/channel/heartbeat.ts) shares: between its two threads, the
// slots of a BigInt64Array on a SharedArrayBuffer and their messages; with the nodes'
// watchdogs, the peer's beats of a channel end.
import type { BeatRole } from './heartbeat-wire.js';

/** process.hrtime of the latest good beat from the peer, in the current session (0: none yet). */
export const HEARD_AT = 0;
/** process.hrtime at which the node's main thread last turned (it stamps this every beat). */
export const MAIN_AT = 1;
/** The session HEARD_AT belongs to (set by the link thread when it takes a new session). */
export const SESSION = 2;
export const HEARD_COUNT = 3;
export const SENT_COUNT = 4;
/**
 * The longest gap between two of the peer's beats in this session's last one or two
 * BEAT_GAP_WINDOW_MS windows, in ns: what the watchdog's adaptive timeout scales.
 */
export const GAP_PEAK = 5;
export const SLOTS = 6;
export const BEAT_GAP_WINDOW_MS = 5000;

export interface LinkInit {
  role: BeatRole;
  /** A primary: the address its channel listens on (UDP, same port number). A backup: its primary's. */
  host: string;
  port: number;
  beatMs: number;
  hangMs: number;
  /** The link thread's nice value where the host permits it (below 0: above the guest's threads). */
  nice: number;
  shared: SharedArrayBuffer;
}

export type LinkMessage =
  /** The key of the channel's TLS session now attached (undefined: none attached). */
  | { type: 'session'; session: number; key: Uint8Array | undefined }
  | { type: 'close' };

export type LinkReport =
  | { type: 'ready'; port: number; raised: boolean }
  | { type: 'bad'; line: string }
  | { type: 'error'; message: string };

/** The peer's heartbeats as the watchdog reads them (runtime/channel/watchdog.ts). */
export interface PeerBeats {
  /** How long ago (ms) the peer's latest beat arrived; Infinity before the first of this session. */
  sinceHeardMs(): number;
  /** The longest gap between two of the peer's beats lately (ms; GAP_PEAK). */
  gapPeakMs(): number;
}

const beatsOf = new WeakMap<object, PeerBeats>();
/** The heartbeats of `end`'s peer, if a link watches that end (TCP channels across processes). */
export const peerBeats = (end: object): PeerBeats | undefined => beatsOf.get(end);
export const registerBeats = (end: object, beats: PeerBeats): void => {
  beatsOf.set(end, beats);
};
