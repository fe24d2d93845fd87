// The distributed arbiter (DESIGN §4): etcd, test-and-set as one transaction on the key
// `/ftvm/<pairId>/<generation>`:
//   If(createRevision(key) == 0) Then(put(key, claimant)) Else(get(key))
// etcd's transactions are linearizable, so exactly one claimant ever creates the key.

import type { Etcd3, IOptions } from 'etcd3';
import { ArbiterUnavailableError, checkKey, type Arbiter, type ClaimResult } from './arbiter.js';

export interface EtcdArbiterOptions {
  /** `host:port` of each etcd member (http). */
  endpoints: string[];
  /** Connecting gives up after this long. */
  dialTimeoutMs?: number;
  /** Each call gives up after this long: an unreachable arbiter must answer promptly. */
  callTimeoutMs?: number;
}

export const ETCD_PREFIX = '/ftvm/';
export const etcdKey = (pairId: string, generation: number): string => `${ETCD_PREFIX}${pairId}/${generation}`;

/**
 * gRPC's status text in the operator's words: "14 UNAVAILABLE: No connection established.
 * Last error: Error: connect ECONNREFUSED h:p. Resolution note: " says "no connection
 * established: connect ECONNREFUSED h:p".
 */
export function grpcWords(message: string): string {
  const m = /^\d+ [A-Z_]+: (.*?)\.? Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/s.exec(message);
  return m ? `${m[1]!.charAt(0).toLowerCase()}${m[1]!.slice(1)}: ${m[2]}` : message.replace(/\.? Resolution note:\s*$/, '');
}

export class EtcdArbiter implements Arbiter {
  // NOTE: etcd3 (with gRPC) loads on first use, so that importing the arbiters does not
  // cost every command the gRPC start-up.
  private clientPromise: Promise<Etcd3> | undefined;
  private closed = false;
  /** close() was called: a request it cut short failed because of it, not the cluster. */
  get isClosed(): boolean {
    return this.closed;
  }

  constructor(readonly opts: EtcdArbiterOptions) {
    if (opts.endpoints.length === 0) throw new RangeError('etcd arbiter: no endpoints');
  }

  private connect(): Promise<Etcd3> {
    this.clientPromise ??= Promise.all([import('etcd3'), import('cockatiel')]).then(([{ Etcd3 }, { noop }]) => this.create(Etcd3, noop));
    return this.clientPromise;
  }

  private create(Client: typeof Etcd3, noop: NonNullable<IOptions['faultHandling']>['global']): Etcd3 {
    const opts = this.opts;
    const callTimeoutMs = opts.callTimeoutMs ?? 1000;
    const options: IOptions = {
      hosts: opts.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`)),
      dialTimeout: opts.dialTimeoutMs ?? 1000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      // NOTE: no client-side retries or circuit breaker: claimUntilDecided retries at the
      // protocol's own pace, and a breaker would keep refusing calls for seconds after etcd
      // is back, delaying go-live for nothing.
      faultHandling: { host: () => noop!, global: noop! },
    };
    return new Client(options);
  }

  private unavailable(err: unknown): ArbiterUnavailableError {
    return new ArbiterUnavailableError(`etcd ${this.opts.endpoints.join(',')}: ${grpcWords((err as Error).message)}`, { cause: err });
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('arbiter: closed');
  }

  async testAndSet(pairId: string, generation: number, claimant: string): Promise<ClaimResult> {
    checkKey(pairId, generation, claimant);
    this.checkOpen();
    const key = etcdKey(pairId, generation);
    let res;
    try {
      const client = await this.connect();
      res = await client
        .if(key, 'Create', '==', 0)
        .then(client.put(key).value(claimant))
        .else(client.get(key))
        .commit();
    } catch (err) {
      throw this.unavailable(err);
    }
    if (res.succeeded) return 'won';
    const kv = res.responses[0]?.response_range?.kvs[0];
    if (!kv) throw new Error(`etcd arbiter: ${key} exists but the transaction returned no value`);
    // A retry after a lost reply finds its own claim: still 'won'.
    return kv.value.toString() === claimant ? 'won' : 'lost';
  }

  async holder(pairId: string, generation: number): Promise<string | undefined> {
    checkKey(pairId, generation);
    this.checkOpen();
    try {
      return (await (await this.connect()).get(etcdKey(pairId, generation)).string()) ?? undefined;
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /** Every claim of a pair: generation -> claimant (for the fault checker). */
  async claims(pairId: string): Promise<Map<number, string>> {
    checkKey(pairId, 0);
    this.checkOpen();
    let all: Record<string, string>;
    try {
      all = await (await this.connect()).getAll().prefix(`${ETCD_PREFIX}${pairId}/`).strings();
    } catch (err) {
      throw this.unavailable(err);
    }
    const out = new Map<number, string>();
    for (const [k, v] of Object.entries(all)) out.set(Number(k.slice(k.lastIndexOf('/') + 1)), v);
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.clientPromise) (await this.clientPromise).close();
  }
}

/** `HOST:PORT[,HOST:PORT...]` -> endpoints. Throws RangeError for a malformed list. */
export function parseEtcdEndpoints(list: string): string[] {
  const endpoints = list.split(',').map((s) => s.trim());
  for (const e of endpoints) {
    const m = /^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(e);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) throw new RangeError(`etcd endpoint ${JSON.stringify(e)}: expected HOST:PORT`);
  }
  return endpoints;
}
