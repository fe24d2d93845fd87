// virtio-net under FT (DESIGN §2–§3). A received packet is a logged input: its bytes are
// copied from a bounce buffer into a receive buffer the guest posted, at an exact icount.
// A transmitted packet is an output, held until the backup acked its icount.
import { setup } from 'xstate';

export type VirtioNetEvent =
  /** The guest made receive buffers available (rx queue notify). */
  | { type: 'net.buffersPosted' }
  /** A packet arrived from the host network; `lastBuffer`: it fills the last posted buffer. */
  | { type: 'net.arrived'; lastBuffer: boolean }
  /** The guest queued a packet for transmission: an output. */
  | { type: 'net.sent' }
  /** Held packets were released to the network; `remaining` are still held. */
  | { type: 'net.released'; remaining: number };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const virtioNetMachine = setup({
  types: { context: {} as Record<string, never>, events: {} as VirtioNetEvent },
  actions: {
    /** Copy the packet from the bounce buffer into guest memory, log it, raise the IRQ. */
    deliverPacket: unwired('deliverPacket'),
    /** No buffer to take it: drop it, as a NIC does (UDP tolerates loss; nothing is logged). */
    dropPacket: unwired('dropPacket'),
    /** Send released packets to the host network. */
    transmit: unwired('transmit'),
  },
  guards: {
    isLastBuffer: ({ event }) => event.type === 'net.arrived' && event.lastBuffer,
    isTxDrained: ({ event }) => event.type === 'net.released' && event.remaining === 0,
  },
}).createMachine({
  id: 'virtioNet',
  type: 'parallel',
  context: {},
  states: {
    rx: {
      initial: 'starved',
      states: {
        starved: {
          on: {
            'net.buffersPosted': { target: 'receiving' },
            'net.arrived': { actions: 'dropPacket' },
          },
        },
        receiving: {
          on: {
            'net.arrived': [
              { guard: 'isLastBuffer', target: 'starved', actions: 'deliverPacket' },
              { actions: 'deliverPacket' },
            ],
          },
        },
      },
    },
    tx: {
      initial: 'idle',
      states: {
        idle: { on: { 'net.sent': { target: 'holding' } } },
        holding: {
          on: {
            'net.released': [
              { guard: 'isTxDrained', target: 'idle', actions: 'transmit' },
              { actions: 'transmit' },
            ],
          },
        },
      },
    },
  },
});
