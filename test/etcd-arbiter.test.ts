// The etcd arbiter against a real etcd (Debian etcd-server) on loopback ports.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArbiterUnavailableError } from '../runtime/arbiter/arbiter.js';
import { claimUntilDecided } from '../runtime/arbiter/claim.js';
import { EtcdArbiter, parseEtcdEndpoints } from '../runtime/arbiter/etcd.js';
import { parseArbiterSpec } from '../runtime/arbiter/spec.js';
import { EtcdServer, freePort } from '../runtime/faults/etcd-server.js';

let etcd: EtcdServer;
const arbiters: EtcdArbiter[] = [];
const arbiter = (opts: { callTimeoutMs?: number } = {}): EtcdArbiter => {
  const a = new EtcdArbiter({ endpoints: [etcd.endpoint], ...opts });
  arbiters.push(a);
  return a;
};

beforeAll(async () => {
  etcd = await EtcdServer.start();
});

afterAll(async () => {
  for (const a of arbiters) await a.close();
  await etcd?.destroy();
});

describe('etcd arbiter', () => {
  it('has exactly one winner among many racing claimants, on separate clients', async () => {
    for (let generation = 1; generation <= 3; generation++) {
      const clients = Array.from({ length: 8 }, () => arbiter());
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => clients[i % clients.length]!.testAndSet('race', generation, `claimant-${i}`)),
      );
      const winners = results.flatMap((r, i) => (r === 'won' ? [`claimant-${i}`] : []));
      expect(winners).toHaveLength(1);
      expect(await clients[0]!.holder('race', generation)).toBe(winners[0]);
      // Asking again as the winner (a retry after a lost reply) is still 'won'; others lose.
      expect(await clients[3]!.testAndSet('race', generation, winners[0]!)).toBe('won');
      expect(await clients[3]!.testAndSet('race', generation, 'latecomer')).toBe('lost');
    }
    expect(await arbiter().claims('race')).toEqual(new Map([1, 2, 3].map((g) => [g, expect.stringMatching(/^claimant-/)])));
    expect(await arbiter().holder('race', 99)).toBeUndefined();
  });

  it('is unavailable promptly while etcd is down, and decides once it is back', async () => {
    const a = arbiter({ callTimeoutMs: 500 });
    expect(await a.testAndSet('outage', 1, 'before')).toBe('won');
    await etcd.kill();
    const t0 = Date.now();
    await expect(a.testAndSet('outage', 2, 'backup')).rejects.toBeInstanceOf(ArbiterUnavailableError);
    await expect(a.holder('outage', 1)).rejects.toBeInstanceOf(ArbiterUnavailableError);
    // Promptly: the call timeout, not gRPC's default of minutes.
    expect(Date.now() - t0).toBeLessThan(3000);

    // A claimant keeps trying through the outage and is decided once etcd is back.
    const attempts: number[] = [];
    const claim = claimUntilDecided(a, 'outage', 2, 'backup', { retryMs: 100, onUnavailable: (_e, n) => attempts.push(n) });
    await new Promise((r) => setTimeout(r, 400));
    await etcd.restart();
    expect(await claim).toBe('won');
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    // The claim made before the outage survived it (etcd persists to its data directory).
    expect(await a.holder('outage', 1)).toBe('before');
    expect(await a.testAndSet('outage', 2, 'primary')).toBe('lost');
  });

  it('is unavailable, not hanging, when nothing listens at the endpoint', async () => {
    const a = new EtcdArbiter({ endpoints: [`127.0.0.1:${await freePort()}`], dialTimeoutMs: 300, callTimeoutMs: 300 });
    const t0 = Date.now();
    await expect(a.testAndSet('nobody', 1, 'x')).rejects.toBeInstanceOf(ArbiterUnavailableError);
    expect(Date.now() - t0).toBeLessThan(3000);
    await a.close();
  });

  it('parses etcd specs', async () => {
    expect(parseEtcdEndpoints('10.0.0.1:2379,etcd-b:2379')).toEqual(['10.0.0.1:2379', 'etcd-b:2379']);
    expect(() => parseEtcdEndpoints('10.0.0.1')).toThrow(RangeError);
    expect(() => parseArbiterSpec('etcd:')).toThrow(RangeError);
    const a = parseArbiterSpec(`etcd:${etcd.endpoint}`);
    expect(a).toBeInstanceOf(EtcdArbiter);
    expect(await a.testAndSet('spec', 1, 'me')).toBe('won');
    await a.close();
  });
});
