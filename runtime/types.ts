// Contracts shared by the CPU, the devices, the environment and the runtime.
// Everything non-deterministic enters through `Env`; everything the outside world may
// observe leaves through `Output` (and so falls under the output rule, DESIGN §3).
import type { ActorOptions, AnyActorLogic } from 'xstate';

/** Why a batch ended. Plain numbers so the hot loop never allocates. */
export const Exit = {
  /** The budget ran out exactly (the event horizon). */
  Budget: 0,
  /** `wfi` retired with no enabled interrupt pending: wait for an input. */
  Wfi: 1,
  /** The guest powered off or exited through sifive_test (see Hart.haltCode). */
  Halt: 2,
  /** A fatal error: trap with no handler, fetch from nowhere (see Hart.fault). */
  Fault: 3,
  /** A device or CSR write asked the batch to end (mtimecmp, mie, mstatus, ...). */
  Request: 4,
} as const;
export type Exit = (typeof Exit)[keyof typeof Exit];
export const exitName = (e: Exit): string =>
  (['budget', 'wfi', 'halt', 'fault', 'request'] as const)[e] ?? `exit${e}`;

/** Values the guest reads that differ from run to run (DESIGN §2). All are logged live, checked on replay. */
export type ValueKind = 'mtime' | 'rtc' | 'seed';

/** Something the outside world may observe: held by the primary until the backup acked up to `icount`. */
export type Output =
  | { kind: 'console'; icount: number; byte: number }
  | { kind: 'power'; icount: number; code: number }
  | { kind: 'net'; icount: number; frame: Uint8Array }
  /**
   * A disk write (or, with `flush`, a cache flush: no data) of virtio-blk request `tag`. Its
   * completion comes back as a logged `disk-done` input once the host has executed it.
   */
  | { kind: 'disk-write'; icount: number; tag?: number; sector: number; data: Uint8Array; flush?: boolean };

/** A device register window. Offsets are relative to the device's base; values are unsigned. */
export interface MmioDevice {
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
  /** JSON-able register state for snapshots. */
  save(): unknown;
  load(state: unknown): void;
}

/** An interrupt line a device raises or lowers; the device never learns where it leads. */
export interface IrqLine {
  set(level: boolean): void;
}

/** Fatal guest error, reported instead of hanging or crashing Node. */
export interface GuestFault {
  cause: number;
  tval: number;
  pc: number;
  icount: number;
  message: string;
}

/**
 * How a device's chart reports to an inspector (`--inspect`, the dashboard): the `inspect`
 * option of `createActor`. Devices pass it to the actors of their charts.
 */
export type ChartInspect = NonNullable<ActorOptions<AnyActorLogic>['inspect']>;
