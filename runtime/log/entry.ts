import type { ValueKind } from '../types.js';

/**
 * One record of the log of non-deterministic inputs (DESIGN §2). `seq` numbers entries
 * consecutively within a stream; `icount` is the number of retired instructions at which the
 * entry takes effect. Within one stream icount never decreases.
 */
export type LogEntry = { seq: number; icount: number } & LogPayload;

export type OutputKind = 'console' | 'power' | 'net' | 'disk-write';

/**
 * Why a stream ended: the guest powered off (`halt`, also what an end without a reason
 * means), the guest faulted with no trap handler (`fault`, before the faulting instruction
 * retired), or the recorder stopped the guest at an instruction boundary (`stopped`: a
 * signal, a closed stdout, --max-instructions). Replay stops at the end's icount either way.
 */
export type EndReason = 'halt' | 'fault' | 'stopped';

export type LogPayload =
  /** Timer interrupt takes effect at icount: MTIP raised. */
  | { type: 'timer' }
  /** The guest read `value` during the instruction after `icount` retired (< 2^53). */
  | { type: 'value'; kind: ValueKind; value: number }
  /** Console input byte delivered at icount. */
  | { type: 'console'; byte: number }
  /** A network frame lands in the virtio-net receive queue at icount. */
  | { type: 'net-rx'; frame: Uint8Array }
  /** Data of a disk read request `tag` lands in guest memory at icount. */
  | { type: 'disk-read'; tag: number; data: Uint8Array }
  /** Disk request `tag` completes with `status` at icount. */
  | { type: 'disk-done'; tag: number; status: number }
  /**
   * Heartbeat: the primary has reached icount, so the backup may run up to it. `released`
   * counts the outputs the primary has let out so far: at go-live the backup re-issues only
   * the outputs after it (DESIGN §3, duplicate outputs).
   */
  | { type: 'progress'; released: number }
  /** The primary produced `count` outputs of `kind` at icount (checked on replay). */
  | { type: 'output'; kind: OutputKind; count: number }
  /** State digest at icount (lowercase hex, at most 32 bytes) for divergence detection. */
  | { type: 'digest'; digest: string }
  /** Opaque (compressed) machine snapshot taken at icount; a reader may start replay here. */
  | { type: 'snapshot'; data: Uint8Array }
  /**
   * The stream ends cleanly at icount. With no `reason` (or `halt`) the guest powered off
   * with `code`; otherwise `code` is the recorder's exit code.
   */
  | { type: 'end'; code: number; reason?: EndReason };

export type LogEntryType = LogPayload['type'];

/** Narrows a LogEntry to one type. */
export type LogEntryOf<T extends LogEntryType> = Extract<LogEntry, { type: T }>;

export const isEntryOf =
  <T extends LogEntryType>(type: T) =>
  (e: LogEntry): e is LogEntryOf<T> =>
    e.type === type;
