export { ArbiterUnavailableError, type Arbiter, type ClaimResult } from './arbiter.js';
export { claimUntilDecided, type ClaimOptions } from './claim.js';
export { EtcdArbiter, etcdKey, parseEtcdEndpoints, type EtcdArbiterOptions } from './etcd.js';
export { FileArbiter } from './file.js';
export { InProcessArbiter } from './in-process.js';
export { parseArbiterSpec } from './spec.js';
