// A virtio-mmio transport's device status (VIRTIO 1.1 §2.1, §3.1.1), shared by virtio-blk
// and virtio-net as the transport is (devices/virtio-mmio.ts). The register keeps the bits;
// this chart names the phase of driver initialisation they mean.
import { setup } from 'xstate';

/** Device status bits (VIRTIO 1.1 §2.1). */
const ACKNOWLEDGE = 1, DRIVER = 2, DRIVER_OK = 4, FEATURES_OK = 8, FAILED = 0x80;

export type VirtioEvent =
  /** The guest wrote the Status register (0 resets the device). */
  | { type: 'virtio.statusWritten'; status: number }
  /** The device found a guest mistake and set DEVICE_NEEDS_RESET (§2.1.2). */
  | { type: 'virtio.broken' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

const has = (bit: number) => ({ event }: { event: VirtioEvent }) =>
  event.type === 'virtio.statusWritten' && (event.status & bit) !== 0;

export const virtioMachine = setup({
  types: { context: {} as Record<string, never>, events: {} as VirtioEvent },
  actions: {
    /** Drop queues and in-device state: the guest wrote 0 (§4.2.3.1 reset). */
    resetDevice: unwired('resetDevice'),
    /** Raise a configuration-change interrupt so the driver sees DEVICE_NEEDS_RESET. */
    raiseConfigInterrupt: unwired('raiseConfigInterrupt'),
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
  context: {},
  on: {
    // Writing 0 resets from any phase, the only way out of needsReset and failed.
    'virtio.statusWritten': [
      { guard: 'isReset', target: '.reset', actions: 'resetDevice' },
      // The highest phase whose bit is set names the state; FAILED overrides them all.
      { guard: 'hasFailed', target: '.failed' },
      { guard: 'hasDriverOk', target: '.ready' },
      { guard: 'hasFeaturesOk', target: '.featuresOk' },
      { guard: 'hasDriver', target: '.driverFound' },
      { guard: 'hasAcknowledge', target: '.acknowledged' },
    ],
  },
  states: {
    reset: {},
    acknowledged: {},
    driverFound: {},
    featuresOk: {},
    // Requests are served only here (VirtioMmio.live).
    ready: {
      on: { 'virtio.broken': { target: 'needsReset' } },
    },
    needsReset: {
      entry: 'raiseConfigInterrupt',
      on: {
        // NOTE: the driver cannot clear NEEDS_RESET except by a reset (§2.1.2), so other
        // writes leave the device here.
        'virtio.statusWritten': [
          { guard: 'isReset', target: 'reset', actions: 'resetDevice' },
          { guard: 'hasFailed', target: 'failed' },
          {},
        ],
      },
    },
    failed: {},
  },
});
