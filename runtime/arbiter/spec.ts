import type { Arbiter } from './arbiter.js';
import { FileArbiter } from './file.js';
import { InProcessArbiter } from './in-process.js';

/**
 * Builds an arbiter from a command-line spec: 'memory' (this process only) or 'file:DIR'
 * (a directory both hosts share). Throws RangeError for anything else.
 */
export function parseArbiterSpec(spec: string): Arbiter {
  if (spec === 'memory') return new InProcessArbiter();
  if (spec.startsWith('file:') && spec.length > 'file:'.length) return new FileArbiter(spec.slice('file:'.length));
  throw new RangeError(`arbiter spec ${JSON.stringify(spec)}: expected 'memory' or 'file:DIR'`);
}
