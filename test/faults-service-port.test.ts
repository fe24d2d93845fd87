// The one wrong dns answer of batch 10 (RELIABILITY "dns wrong answer, resolved"): a service
// port from the ephemeral range, free between a kill and the new primary's bind, can be given to
// a resolver's own socket, which then takes its own query back as the answer (ENODATA). The
// service runs now forward a port below the range (runtime/faults/service-port.ts).
// The second test runs a real resolver (Node's, c-ares) in a network namespace of its own whose
// ephemeral range is one port (the host's setting is not touched); it needs root and unshare,
// and without them fails saying why.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_EPHEMERAL, ephemeralRange, servicePort, udpPortFree } from '../runtime/faults/service-port.js';

const dir = mkdtempSync(join(tmpdir(), 'ftvm-service-port-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the service port of a fault run', () => {
  it('reads the ephemeral range, or takes the Linux default', () => {
    const f = join(dir, 'range');
    writeFileSync(f, '40000\t40099\n');
    expect(ephemeralRange(f)).toEqual([40000, 40099]);
    expect(ephemeralRange(join(dir, 'missing'))).toEqual([...DEFAULT_EPHEMERAL]);
    writeFileSync(f, 'nonsense\n');
    expect(ephemeralRange(f)).toEqual([...DEFAULT_EPHEMERAL]);
  });

  it('is free, and below the ephemeral range (above it when the range starts low)', async () => {
    for (let i = 0; i < 20; i++) {
      const p = await servicePort({ range: [40000, 40099] });
      expect(p).toBeGreaterThanOrEqual(10_000);
      expect(p).toBeLessThan(40000);
      expect(await udpPortFree(p)).toBe(true);
    }
    const high = await servicePort({ range: [1024, 60999] });
    expect(high).toBeGreaterThan(60999);
    expect(high).toBeLessThanOrEqual(65535);
    // The host's own range: what the service runs use.
    const [lo, hi] = ephemeralRange();
    const p = await servicePort();
    expect(p < lo || p > hi).toBe(true);
  });

  it('udpPortFree says no for a port held', async () => {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    try {
      expect(await udpPortFree(s.address().port)).toBe(false);
    } finally {
      s.close();
    }
  });

  it('a resolver whose socket is given the free service port takes its own query as ENODATA; below the range it is refused', async () => {
    const probe = spawnSync('unshare', ['-n', 'true']);
    if (probe.status !== 0) throw new Error(`this test needs root and unshare (a network namespace of its own): ${probe.stderr?.toString().trim() || probe.error?.message}`);
    const EPHEMERAL = 40000;
    const below = await servicePort({ range: [EPHEMERAL, EPHEMERAL] });
    // Nothing is bound to either port: a server killed, its successor not bound yet.
    const script = `
      import { Resolver } from 'node:dns/promises';
      const out = {};
      for (const port of process.argv.slice(1).map(Number)) {
        const r = new Resolver({ timeout: 250, tries: 1 });
        r.setServers(['127.0.0.1:' + port]);
        try { out[port] = await r.resolve4('ns2.example.test'); } catch (e) { out[port] = e.code; }
      }
      console.log(JSON.stringify(out));`;
    const r = spawnSync('unshare', ['-n', 'sh', '-c',
      `ip link set lo up && sysctl -qw net.ipv4.ip_local_port_range="${EPHEMERAL} ${EPHEMERAL}" && exec "$0" --input-type=module -e "$1" ${EPHEMERAL} ${below}`,
      process.execPath, script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as Record<string, unknown>;
    // In the range: the resolver's socket is bound to 40000 and connected to itself; its own
    // query (its id, its question, no answer) comes back and is taken as the reply.
    expect(got[EPHEMERAL]).toBe('ENODATA');
    // Below it: no client socket can be given the port; the query is refused, and retried.
    expect(got[below]).toBe('ECONNREFUSED');
  });
});
