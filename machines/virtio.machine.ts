// A virtio-mmio transport's device status and queue lifecycle (VIRTIO 1.1 §2.1, §3.1.1,
// §4.2.2), the chart devices/virtio-mmio.ts runs for virtio-blk and virtio-net alike. The
// Status register keeps the bits the driver wrote; this chart decides the phase they mean,
// whether requests are served (`ready`), DEVICE_NEEDS_RESET (`needsReset`), and which queues
// are ready. Descriptor walking and byte copies stay in the transport. Events come only from
// status and QueueReady writes that change something, so notifications cost none.
import { assign, setup } from 'xstate';

/** Device status bits (VIRTIO 1.1 §2.1). */
const ACKNOWLEDGE = 1, DRIVER = 2, DRIVER_OK = 4, FEATURES_OK = 8, FAILED = 0x80;

export interface VirtioContext {
  /** Bit q set: queue q is ready (QueueReady = 1). */
  queuesReady: number;
}

export type VirtioEvent =
  /**
   * The guest wrote the Status register (0 resets the device). `status` is what the device
   * kept: FEATURES_OK is dropped when the driver asked for features it was not offered.
   */
  | { type: 'virtio.statusWritten'; status: number }
  /** The guest wrote QueueReady for the selected queue. */
  | { type: 'virtio.queueReadyWritten'; queue: number; ready: boolean }
  /** The device found a guest mistake and set DEVICE_NEEDS_RESET (§2.1.2). */
  | { type: 'virtio.broken' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

const has = (bit: number) => ({ event }: { event: VirtioEvent }) =>
  event.type === 'virtio.statusWritten' && (event.status & bit) !== 0;

export const virtioMachine = setup({
  types: { context: {} as VirtioContext, events: {} as VirtioEvent },
  actions: {
    /** Drop the registers, queues and in-device state: the guest wrote 0 (§4.2.3.1 reset). */
    resetDevice: unwired('resetDevice'),
    /** Raise a configuration-change interrupt so the driver sees DEVICE_NEEDS_RESET. */
    raiseConfigInterrupt: unwired('raiseConfigInterrupt'),
    /** A reset leaves no queue ready. */
    clearQueues: assign({ queuesReady: 0 }),
    setQueueReady: assign({
      queuesReady: ({ context, event }) => {
        if (event.type !== 'virtio.queueReadyWritten') return context.queuesReady;
        const bit = 1 << event.queue;
        return event.ready ? context.queuesReady | bit : context.queuesReady & ~bit;
      },
    }),
  },
  guards: {
    isReset: ({ event }) => event.type === 'virtio.statusWritten' && event.status === 0,
    hasFailed: has(FAILED),
    hasDriverOk: has(DRIVER_OK),
    hasFeaturesOk: has(FEATURES_OK),
    hasDriver: has(DRIVER),
    hasAcknowledge: has(ACKNOWLEDGE),
  },
}).createMachine({
  id: 'virtio',
  initial: 'reset',
  context: { queuesReady: 0 },
  on: {
    // Writing 0 resets from any phase, the only way out of needsReset and failed.
    'virtio.statusWritten': [
      { guard: 'isReset', target: '.reset', actions: ['resetDevice', 'clearQueues'] },
      // The highest phase whose bit is set names the state; FAILED overrides them all.
      { guard: 'hasFailed', target: '.failed' },
      { guard: 'hasDriverOk', target: '.ready' },
      { guard: 'hasFeaturesOk', target: '.featuresOk' },
      { guard: 'hasDriver', target: '.driverFound' },
      { guard: 'hasAcknowledge', target: '.acknowledged' },
    ],
    'virtio.queueReadyWritten': { actions: 'setQueueReady' },
  },
  states: {
    reset: {},
    acknowledged: {},
    driverFound: {},
    featuresOk: {},
    // Requests are served only here, and only on ready queues (VirtioMmio.live).
    ready: {
      on: { 'virtio.broken': { target: 'needsReset' } },
    },
    needsReset: {
      entry: 'raiseConfigInterrupt',
      on: {
        // NOTE: the driver cannot clear NEEDS_RESET except by a reset (§2.1.2), so other
        // writes leave the device here.
        'virtio.statusWritten': [
          { guard: 'isReset', target: 'reset', actions: ['resetDevice', 'clearQueues'] },
          { guard: 'hasFailed', target: 'failed' },
          {},
        ],
      },
    },
    failed: {},
  },
});
