// virtio-net's receive side and its network link (VIRTIO 1.1 §5.1, DESIGN §2–§3), the chart
// devices/virtio-net.ts runs. The device copies frames (plain TypeScript); this chart decides
// whether a frame from the host may be delivered now (`rx.ready`: the guest has posted a
// receive buffer and notified; `rx.starved`: frames wait in the host's queue, none is taken
// and so none is logged) and whether the host network is connected (`link.up`: frames flow in
// from the backend and released frames go out to it; `link.down`: a replaying backup or
// `ftvm replay`, whose received frames come from the log and whose sent frames go nowhere).
// Transmission needs no control state: each frame leaves as an output at its notify.
//
// Events come only on changes: an RX notify while starved that finds buffers, the delivery
// that takes the last posted buffer, a device reset, the backend attached. A frame delivered
// into one of several posted buffers sends nothing.
import { setup } from 'xstate';

export type VirtioNetEvent =
  /** The guest notified the receive queue with buffers available. */
  | { type: 'net.buffersPosted' }
  /** A delivered frame took the last receive buffer the guest had posted. */
  | { type: 'net.buffersUsedUp' }
  /** The transport reset the device (status 0, or DEVICE_NEEDS_RESET): no buffer is posted. */
  | { type: 'net.reset' }
  /** The host connected the network backend: at boot on a primary, at go-live on a backup. */
  | { type: 'net.linkUp' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const virtioNetMachine = setup({
  types: { context: {} as Record<string, never>, events: {} as VirtioNetEvent },
  actions: {
    /** Let the backend's frames in: each becomes a frame waiting for delivery (a logged `net-rx` once delivered). */
    connectBackend: unwired('connectBackend'),
  },
}).createMachine({
  id: 'virtioNet',
  type: 'parallel',
  context: {},
  states: {
    rx: {
      initial: 'starved',
      states: {
        starved: { on: { 'net.buffersPosted': { target: 'ready' } } },
        ready: {
          on: {
            'net.buffersUsedUp': { target: 'starved' },
            'net.reset': { target: 'starved' },
          },
        },
      },
    },
    link: {
      initial: 'down',
      states: {
        down: { on: { 'net.linkUp': { target: 'up', actions: 'connectBackend' } } },
        up: {},
      },
    },
  },
});
