// Every statechart of ftvm, for the runtime and for tooling (dashboard, diagrams) that
// iterates them. Charts hold no I/O; their effects are supplied with `.provide()`.
import { arbiterClientMachine } from './arbiter-client.machine.js';
import { backupMachine } from './backup.machine.js';
import { channelMachine } from './channel.machine.js';
import { cpuMachine } from './cpu.machine.js';
import { pairMachine } from './pair.machine.js';
import { plicMachine } from './plic.machine.js';
import { primaryMachine } from './primary.machine.js';
import { timerMachine } from './timer.machine.js';
import { uartMachine } from './uart.machine.js';
import { virtioBlkMachine } from './virtio-blk.machine.js';
import { virtioNetMachine } from './virtio-net.machine.js';
import { virtioMachine } from './virtio.machine.js';

export * from './arbiter-client.machine.js';
export * from './backup.machine.js';
export * from './channel.machine.js';
export * from './cpu.machine.js';
export * from './pair.machine.js';
export * from './plic.machine.js';
export * from './primary.machine.js';
export * from './timer.machine.js';
export * from './uart.machine.js';
export * from './virtio-blk.machine.js';
export * from './virtio-net.machine.js';
export * from './virtio.machine.js';

/** Each chart by its file name (`machines/<name>.machine.ts`). */
export const allMachines = {
  'arbiter-client': arbiterClientMachine,
  backup: backupMachine,
  channel: channelMachine,
  cpu: cpuMachine,
  pair: pairMachine,
  plic: plicMachine,
  primary: primaryMachine,
  timer: timerMachine,
  uart: uartMachine,
  virtio: virtioMachine,
  'virtio-blk': virtioBlkMachine,
  'virtio-net': virtioNetMachine,
} as const;

export type MachineName = keyof typeof allMachines;
