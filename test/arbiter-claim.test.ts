import { describe, expect, it } from 'vitest';
import { ArbiterUnavailableError, type Arbiter } from '../runtime/arbiter/arbiter.js';
import { claimUntilDecided } from '../runtime/arbiter/claim.js';
import { FileArbiter } from '../runtime/arbiter/file.js';
import { InProcessArbiter } from '../runtime/arbiter/in-process.js';
import { parseArbiterSpec } from '../runtime/arbiter/spec.js';

describe('claimUntilDecided', () => {
  it('keeps retrying while the arbiter is unavailable, then decides', async () => {
    const a = new InProcessArbiter();
    a.setAvailable(false);
    await expect(a.testAndSet('p', 1, 'x')).rejects.toBeInstanceOf(ArbiterUnavailableError);
    const attempts: number[] = [];
    const claim = claimUntilDecided(a, 'p', 1, 'backup', { retryMs: 5, onUnavailable: (_e, n) => attempts.push(n) });
    await new Promise((r) => setTimeout(r, 40));
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(await a.holder('p', 1).catch((e: unknown) => e)).toBeInstanceOf(ArbiterUnavailableError);
    a.setAvailable(true);
    expect(await claim).toBe('won');
    expect(attempts).toEqual(attempts.map((_, i) => i + 1));
  });

  it('lets only one of two claimants through an outage', async () => {
    const a = new InProcessArbiter();
    a.setAvailable(false);
    const primary = claimUntilDecided(a, 'p', 2, 'primary', { retryMs: 3 });
    const backup = claimUntilDecided(a, 'p', 2, 'backup', { retryMs: 7 });
    await new Promise((r) => setTimeout(r, 20));
    a.setAvailable(true);
    expect([await primary, await backup].sort()).toEqual(['lost', 'won']);
  });

  it('stops when aborted', async () => {
    const a = new InProcessArbiter();
    a.setAvailable(false);
    const ctl = new AbortController();
    const claim = claimUntilDecided(a, 'p', 1, 'x', { retryMs: 1000, signal: ctl.signal });
    setTimeout(() => ctl.abort(new Error('shutting down')), 10);
    await expect(claim).rejects.toThrow('shutting down');
    a.setAvailable(true);
    expect(await a.holder('p', 1)).toBeUndefined();
  });

  it('does not retry other errors', async () => {
    let calls = 0;
    const broken: Arbiter = {
      testAndSet: async () => {
        calls++;
        throw new TypeError('bug');
      },
      holder: async () => undefined,
      close: async () => undefined,
    };
    await expect(claimUntilDecided(broken, 'p', 1, 'x', { retryMs: 1 })).rejects.toThrow(TypeError);
    expect(calls).toBe(1);
  });
});

describe('parseArbiterSpec', () => {
  it('builds the named arbiter', () => {
    expect(parseArbiterSpec('memory')).toBeInstanceOf(InProcessArbiter);
    const f = parseArbiterSpec('file:/srv/ftvm/arbiter');
    expect(f).toBeInstanceOf(FileArbiter);
    expect((f as FileArbiter).dir).toBe('/srv/ftvm/arbiter');
  });

  it('rejects anything else', () => {
    expect(() => parseArbiterSpec('file:')).toThrow(RangeError);
    expect(() => parseArbiterSpec('etcd://x')).toThrow(RangeError);
  });
});
