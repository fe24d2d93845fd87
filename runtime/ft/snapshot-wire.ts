import { deflateSync, inflateSync } from 'node:zlib';
import type { Machine } from '../machine.js';
import { decodeSnapshot, encodeSnapshot, type MachineSnapshot } from '../snapshot.js';

/**
 * A snapshot as it travels in a log or to a joining backup: zero pages are already dropped by
 * encodeSnapshot, deflate (fastest level) takes the rest.
 */
export const packSnapshot = (m: Machine): Uint8Array => deflateSync(encodeSnapshot(m.snapshot()), { level: 1 });
export const unpackSnapshot = (data: Uint8Array): MachineSnapshot => decodeSnapshot(inflateSync(data));
