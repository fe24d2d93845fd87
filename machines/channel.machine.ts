// The logging channel's lifecycle (DESIGN §4): connect, authenticate with the pre-shared
// key, then carry log entries and acks. Back-pressure and peer liveness are independent
// facts about an open channel, so they are two parallel regions of `open`.
import { setup } from 'xstate';

export type ChannelEvent =
  | { type: 'channel.connected' }
  | { type: 'channel.authenticated' }
  | { type: 'channel.authFailed' }
  | { type: 'channel.highWater' }
  | { type: 'channel.lowWater' }
  | { type: 'peer.silent' }
  | { type: 'peer.heard' }
  | { type: 'channel.failed' }
  | { type: 'channel.close' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const channelMachine = setup({
  types: { context: {} as Record<string, never>, events: {} as ChannelEvent },
  actions: {
    /** Flow control: the backup lags beyond the bound, so the VM waits (DESIGN §3). */
    pauseVm: unwired('pauseVm'),
    resumeVm: unwired('resumeVm'),
    /** Tell the protocol chart (primary or backup) that the peer is suspect. */
    reportSuspect: unwired('reportSuspect'),
  },
}).createMachine({
  id: 'channel',
  initial: 'connecting',
  context: {},
  on: {
    // Errors become events (STYLE "Streams"): a broken socket or a bad frame (DESIGN §2:
    // an error, never a guess) closes the channel from any state.
    'channel.failed': { target: '.closed' },
    'channel.close': { target: '.closed' },
  },
  states: {
    connecting: {
      on: { 'channel.connected': { target: 'authenticating' } },
    },
    authenticating: {
      on: {
        'channel.authenticated': { target: 'open' },
        'channel.authFailed': { target: 'closed' },
      },
    },
    open: {
      type: 'parallel',
      states: {
        flow: {
          initial: 'flowing',
          states: {
            flowing: { on: { 'channel.highWater': { target: 'backpressured' } } },
            // Exit resumes, so closing a backpressured channel never leaves the VM paused.
            backpressured: {
              entry: 'pauseVm',
              exit: 'resumeVm',
              on: { 'channel.lowWater': { target: 'flowing' } },
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
    closed: { type: 'final' },
  },
});
