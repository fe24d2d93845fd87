// The logging channel's lifecycle (DESIGN §4), one chart on each end of every channel: the
// channel core (runtime/channel/core.ts) runs it and asks it, through its tags, what may
// happen now; the transports (in-process, MessagePort, TCP/TLS) supply its effects. Entries
// and acks themselves never pass through it (they are the data plane, as descriptor walking
// is for a virtio device): it decides connect, handshake (membership), open, back-pressure,
// suspicion and the end, and the core's streams show what it decided.
//
// Tags, read by the core on its data path:
//   accepting: `send` takes entries (they wait in memory until the channel is open);
//   writable:  frames and acks go to the transport;
//   receiving: arriving chunks are decoded and delivered.
import { setup } from 'xstate';

export type ChannelEvent =
  /** The transport is up (TCP: TLS-PSK done; a port or the in-process pipe: at once). */
  | { type: 'transport.connected' }
  /** The handshake admitted this end's peer into the pair (DESIGN §3 Membership). */
  | { type: 'peer.admitted' }
  /** The peer turned this end away (busy, another pair, image or memory size, wrong key). */
  | { type: 'peer.refused' }
  /** The send window rose above its high-water mark (bytes or entries not yet acked). */
  | { type: 'window.full' }
  /** The send window fell to its low-water mark. */
  | { type: 'window.drained' }
  /** Nothing heard from the peer for the silence timeout; and heard again. */
  | { type: 'peer.silent' }
  | { type: 'peer.heard' }
  /** This end closes in order: what was sent still arrives, then the end of stream. */
  | { type: 'channel.close' }
  /** The orderly close of this end has left (the transport ended its side). */
  | { type: 'transport.ended' }
  /** The peer closed in order (after everything it sent was delivered). */
  | { type: 'peer.closed' }
  /** The stream broke: a bad frame, a transport error, a peer gone without a goodbye. */
  | { type: 'channel.failed' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const channelMachine = setup({
  types: {
    context: {} as Record<string, never>,
    events: {} as ChannelEvent,
    tags: {} as 'accepting' | 'writable' | 'receiving',
  },
  actions: {
    /** Opening moves of this end's side of the handshake (TCP: the join request, or the hello). */
    startHandshake: unwired('startHandshake'),
    /** Admitted: say so (`channel.open`), and let what waited in memory leave. */
    reportOpen: unwired('reportOpen'),
    /** Flow control (DESIGN §3): the sender must wait (`pressure$` true), or may go on (false). */
    reportPressure: unwired('reportPressure') as (_: unknown, params: { on: boolean }) => void,
    /** Tell the protocol chart (primary or backup) that the peer is silent. */
    reportSuspect: unwired('reportSuspect'),
    /** Orderly close of this end: flush, then end the stream behind the data. */
    endTransport: unwired('endTransport'),
    /** Tear the transport down at once: nothing more is sent or delivered. */
    abortTransport: unwired('abortTransport'),
    reportClosed: unwired('reportClosed') as (_: unknown, params: { by: 'local' | 'peer' }) => void,
    reportRefused: unwired('reportRefused'),
    reportFailed: unwired('reportFailed'),
  },
}).createMachine({
  id: 'channel',
  initial: 'connecting',
  context: {},
  on: {
    // Errors become events (STYLE "Streams"): a broken socket or a bad frame (DESIGN §2: an
    // error, never a guess) fails the channel from any state before its end.
    'channel.failed': { target: '.failed' },
  },
  states: {
    // Entries may be sent before a backup attached: they wait for it (the TCP listener).
    connecting: {
      tags: ['accepting'],
      on: {
        'transport.connected': { target: 'handshaking' },
        // Turned away at the door: TLS-PSK with another key.
        'peer.refused': { target: 'refused' },
        'channel.close': { target: 'closed', actions: ['abortTransport', { type: 'reportClosed', params: { by: 'local' } }] },
      },
    },
    handshaking: {
      tags: ['accepting'],
      entry: 'startHandshake',
      on: {
        'peer.admitted': { target: 'open' },
        'peer.refused': { target: 'refused' },
        'channel.close': { target: 'closed', actions: ['abortTransport', { type: 'reportClosed', params: { by: 'local' } }] },
      },
    },
    // Only an admitted peer ever gets entries or sends acks (DESIGN §3 Membership).
    open: {
      type: 'parallel',
      tags: ['accepting', 'writable', 'receiving'],
      entry: 'reportOpen',
      on: {
        'channel.close': { target: 'closing' },
        'peer.closed': { target: 'closed', actions: { type: 'reportClosed', params: { by: 'peer' } } },
      },
      states: {
        flow: {
          initial: 'flowing',
          states: {
            flowing: { on: { 'window.full': { target: 'paused' } } },
            // Hysteresis: paused at the high-water mark, flowing again only at the low one, so
            // the VM does not flap. Closing a paused channel ends the stream; nobody waits on it.
            paused: {
              entry: { type: 'reportPressure', params: { on: true } },
              on: { 'window.drained': { target: 'flowing', actions: { type: 'reportPressure', params: { on: false } } } },
            },
          },
        },
        peer: {
          initial: 'responsive',
          states: {
            responsive: { on: { 'peer.silent': { target: 'suspect' } } },
            // Suspicion is only reported: deciding what it means is the protocol's job
            // (DESIGN §3: suspicion alone never makes a second primary).
            suspect: {
              entry: 'reportSuspect',
              on: { 'peer.heard': { target: 'responsive' } },
            },
          },
        },
      },
    },
    // The data already sent still leaves; nothing new is taken.
    closing: {
      tags: ['writable'],
      entry: 'endTransport',
      on: {
        'transport.ended': { target: 'closed', actions: { type: 'reportClosed', params: { by: 'local' } } },
        'peer.closed': { target: 'closed', actions: { type: 'reportClosed', params: { by: 'local' } } },
      },
    },
    closed: { type: 'final' },
    refused: { type: 'final', entry: ['abortTransport', 'reportRefused'] },
    failed: { type: 'final', entry: ['abortTransport', 'reportFailed'] },
  },
});
