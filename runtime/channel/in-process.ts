// The embedded logging channel (DESIGN §4): both ends in one process, joined by microtasks
// and timers. A thin transport under the channel core (core.ts): it still encodes every entry
// to bytes and decodes them on the other side, so it exercises the codec, counts real bytes,
// and fails on a corrupt frame as TCP would. Built together from one image, the two ends need
// no handshake: both are admitted at once. Nothing is held by default (`holdMs` 0): a chunk
// here costs a microtask, not a TLS record or a postMessage.

import type { BackupEnd, ChannelStats, FlowControlOptions, PrimaryEnd } from './channel.js';
import { BackupCore, later, PrimaryCore, type ChartOptions, type ChannelSnapshot } from './core.js';
import type { Observable } from 'rxjs';

export interface InProcessChannelOptions extends FlowControlOptions {
  /** One-way delay of entries and acks. 0 still delivers asynchronously (a microtask later). */
  latencyMs?: number;
  /** Each end's chart: actor id, inspection, silence watchdog. */
  charts?: { primary?: ChartOptions; backup?: ChartOptions };
}

export interface InProcessChannel {
  primary: PrimaryEnd & { readonly state$: Observable<ChannelSnapshot> };
  backup: BackupEnd & { readonly state$: Observable<ChannelSnapshot> };
  /** Fault injection: silently drop everything in flight and from now on, both ways. */
  cut(): void;
  /** Fault injection: flip a bit in the next chunk the backup receives. */
  corrupt(): void;
  stats(): ChannelStats;
}

export function createInProcessChannel(opts: InProcessChannelOptions = {}): InProcessChannel {
  const latencyMs = opts.latencyMs ?? 0;
  let isCut = false;
  let corruptNext = false;
  // Set below; both transports reach the other end's core.
  let primary!: PrimaryCore;
  let backup!: BackupCore;

  primary = new PrimaryCore({ ...opts, ...opts.charts?.primary }, {
    startHandshake: () => primary.admitted(),
    write(chunk) {
      if (isCut) return;
      if (corruptNext) {
        corruptNext = false;
        chunk = Uint8Array.from(chunk);
        chunk[chunk.length >> 1]! ^= 0x04;
      }
      later(latencyMs, () => {
        if (!isCut) backup.chunk(chunk);
      });
    },
    // Orderly close: the data already sent still arrives, then the backup sees the end.
    end() {
      later(latencyMs, () => {
        if (isCut) {
          backup.close();
          primary.ended();
          return;
        }
        backup.streamEnded();
        primary.ended();
      });
    },
    abort(error) {
      if (error) backup.fail(error);
    },
  });
  backup = new BackupCore({ ...opts.charts?.backup, ...(opts.holdMs === undefined ? {} : { holdMs: opts.holdMs }) }, {
    startHandshake: () => backup.admitted(),
    writeAck(seq) {
      if (isCut) return;
      later(latencyMs, () => {
        if (!isCut) primary.ack(seq);
      });
    },
    end() {
      primary.peerClosed();
      backup.ended();
    },
    abort(error) {
      if (error) primary.fail(error);
    },
  });
  primary.connected();
  backup.connected();

  return {
    primary: primary.end,
    backup: backup.end,
    cut(): void {
      isCut = true;
    },
    corrupt(): void {
      corruptNext = true;
    },
    stats: () => primary.stats(),
  };
}
