import type { Arbiter } from './arbiter.js';
import { FileArbiter } from './file.js';
import { InProcessArbiter } from './in-process.js';
import { EtcdArbiter, parseEtcdEndpoints } from './etcd.js';

/**
 * Builds an arbiter from a command-line spec: 'memory' (this process only), 'file:DIR'
 * (a directory both hosts share) or 'etcd:HOST:PORT[,HOST:PORT...]' (an etcd cluster).
 * Throws RangeError for anything else.
 */
export function parseArbiterSpec(spec: string): Arbiter {
  if (spec === 'memory') return new InProcessArbiter();
  if (spec.startsWith('file:') && spec.length > 'file:'.length) return new FileArbiter(spec.slice('file:'.length));
  if (spec.startsWith('etcd:')) return new EtcdArbiter({ endpoints: parseEtcdEndpoints(spec.slice('etcd:'.length)) });
  throw new RangeError(`arbiter spec ${JSON.stringify(spec)}: expected 'memory', 'file:DIR' or 'etcd:HOST:PORT[,HOST:PORT...]'`);
}
