// The payloads a log may carry, as fast-check arbitraries: shared by the wire codec's and the
// file blocks' tests. `outputCount` is the domain of an output marker's count.
import fc from 'fast-check';
import type { LogPayload } from '../../runtime/log/entry.js';

export const MAX = Number.MAX_SAFE_INTEGER;
export const bytesArb = fc.uint8Array({ maxLength: 300 });

export function logPayloadArb(outputCount: fc.Arbitrary<number>): fc.Arbitrary<LogPayload> {
  return fc.oneof(
    fc.constant({ type: 'timer' as const }),
    fc.record({ type: fc.constant('value' as const), kind: fc.constantFrom('mtime' as const, 'rtc' as const, 'seed' as const), value: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: MAX })) }),
    fc.record({ type: fc.constant('console' as const), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ type: fc.constant('net-rx' as const), frame: bytesArb }),
    fc.record({ type: fc.constant('disk-read' as const), tag: fc.integer({ min: 0, max: MAX }), data: bytesArb }),
    fc.record({ type: fc.constant('disk-done' as const), tag: fc.nat(), status: fc.nat(255) }),
    fc.record({ type: fc.constant('progress' as const), released: fc.nat() }),
    fc.record({ type: fc.constant('output' as const), kind: fc.constantFrom('console' as const, 'power' as const, 'net' as const, 'disk-write' as const), count: outputCount }),
    fc.record({ type: fc.constant('digest' as const), digest: fc.uint8Array({ maxLength: 32 }).map((b) => Buffer.from(b).toString('hex')) }),
    fc.record({ type: fc.constant('snapshot' as const), data: bytesArb }),
    fc.record({ type: fc.constant('end' as const), code: fc.integer({ min: -MAX, max: MAX }) }),
    fc.record({ type: fc.constant('end' as const), code: fc.integer({ min: -MAX, max: MAX }), reason: fc.constantFrom('halt' as const, 'fault' as const, 'stopped' as const) }),
  );
}
