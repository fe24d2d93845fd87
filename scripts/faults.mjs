// `npm run faults`: fault injection across processes (DESIGN §6). Each run starts a primary
// and a backup as separate processes on loopback with the seq guest, joined through a
// fault proxy, and injects seeded faults: kill -9 of either process, a cut, a corrupt byte,
// channel stalls (short ones below the suspicion timeout, long ones above it: a partition
// that heals), and, with etcd as the arbiter, etcd killed around a failover. The checker
// then proves from the outputs the world saw and the arbiter's records: nothing lost, one
// execution, never two live primaries for one generation.
//
// Operator errors (issue 11) are mixed in: a third backup (right or wrong key), a rerun on
// an earlier run's key and arbiter, a backup of another image or memory size, stray
// connections before the backup attaches, SIGTERM of either node, and the file arbiter's
// directory gone at a claim. They run the seq-mid guest (300 lines, about 2 s) with short
// stalls only, so that what they check is the operator error itself; the failures run seq.
//
// With --service dns|kv the runs are of that service guest across processes instead
// (runtime/faults/service-run.ts): a disk (a file, or an NBD export for --nbd-share of the
// runs and every 'nbd-restart'), a UDP forward and a client load; faults kill-primary,
// kill-backup, cut, corrupt (a flipped bit in the log stream), arbiter-down, nbd-restart, none,
// and join (re-protection under load: one node killed, `ftvm backup --join` joins the survivor
// through its own proxy, then kill-live, kill-joiner, corrupt, cut or none; for kv also
// in-flight: the primary's disk held, one PUT asked once, the joiner joins, the primary is
// killed, and only the joiner gone live can answer that client), each with stalls.
//
//   node scripts/faults.mjs [--service dns|kv] [--nbd-share F] [--runs N] [--parallel P] [--etcd-runs M] [--seed S] [--minutes T] [--json FILE]
//                           [--kinds K,K...] [--etcd-kinds K,K...] [--after-join K,K...] [--failure-guest seq|seq-mid] [--keep]
//                           [--link on|off] [--proxy process|thread]
// --link on|off passes --heartbeat-link or --no-heartbeat-link to both nodes of the seq runs
// (default: neither, the nodes' default); --proxy picks where the fault proxies relay, in the
// seq and the service runs alike (the channel's, a joiner's, the in-flight disk's): each a
// process of its own (default) or the harness's thread (as before the fourth detection pass). The
// summary counts the 'none' runs that failed over anyway ("spurious") and the link's beats:
// sent, relayed by the proxy, heard, each way.
// --kinds picks the main faults of the file-arbiter runs (default: all, failures weighted as
// before), --etcd-kinds those of the etcd runs (default: arbiter-down,rerun), --after-join
// what strikes after a service run's join (default: kill-live twice, kv in-flight, kill-joiner,
// corrupt, cut, none).
// Needs `npm run build` first (the processes run bin/ftvm.js).
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(join(root, 'dist/runtime/faults/harness.js'))) {
  console.error('faults: dist/ is missing; run `npm run build` first');
  process.exit(2);
}
const { runOnce, FAILURE_FAULTS, OPERATOR_FAULTS } = await import(join(root, 'dist/runtime/faults/harness.js'));
const { EtcdServer, findEtcd } = await import(join(root, 'dist/runtime/faults/etcd-server.js'));
const { runServiceOnce, SERVICE_FAULTS, AFTER_JOIN_FAULTS } = await import(join(root, 'dist/runtime/faults/service-run.js'));
const { PROCESS_TIMING } = await import(join(root, 'dist/runtime/ft/timing.js'));
/** Short stalls stay below the suspicion timeout of a calm host, as they are meant to. */
const SHORT_STALL_MS = Math.round(PROCESS_TIMING.suspectMs * 0.8);

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '40' },
    parallel: { type: 'string', default: '2' },
    'etcd-runs': { type: 'string', default: '6' },
    seed: { type: 'string' },
    minutes: { type: 'string' },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
    kinds: { type: 'string' },
    'etcd-kinds': { type: 'string' },
    'failure-guest': { type: 'string', default: 'seq' },
    service: { type: 'string' },
    'nbd-share': { type: 'string', default: '0.25' },
    'after-join': { type: 'string' },
    link: { type: 'string' },
    proxy: { type: 'string', default: 'process' },
  },
});
const runs = Number(values.runs);
const parallel = Number(values.parallel);
const etcdRuns = findEtcd() ? Number(values['etcd-runs']) : 0;
const seed = Number(values.seed ?? Math.floor(Math.random() * 1e9));
const deadline = values.minutes ? Date.now() + Number(values.minutes) * 60_000 : Infinity;

/** xorshift32: every fault schedule follows from --seed. */
let x = (seed * 0x9e3779b1) >>> 0 || 1;
const random = () => {
  x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
  return x / 0x1_0000_0000;
};
const between = (a, b) => Math.floor(a + random() * (b - a));
const FAILURES = ['kill-primary', 'kill-primary', 'kill-backup', 'cut', 'corrupt', 'none'];
const known = new Set([...FAILURE_FAULTS, ...OPERATOR_FAULTS]);
const pick = (text) => {
  const kinds = text.split(',').filter(Boolean);
  for (const k of kinds) if (!known.has(k)) {
    console.error(`faults: unknown kind '${k}' (known: ${[...known].join(', ')})`);
    process.exit(2);
  }
  return kinds;
};
const service = values.service;
if (service !== undefined && !['dns', 'kv'].includes(service)) {
  console.error(`faults: --service must be dns or kv, got '${service}'`);
  process.exit(2);
}
const serviceKinds = (text) => {
  const kinds = text.split(',').filter(Boolean);
  for (const k of kinds) if (!SERVICE_FAULTS.includes(k)) {
    console.error(`faults: '${k}' is not a fault of the service runs (${SERVICE_FAULTS.join(', ')})`);
    process.exit(2);
  }
  return kinds;
};
const SERVICE_MIX = ['kill-primary', 'kill-primary', 'kill-backup', 'cut', 'corrupt', 'arbiter-down', 'nbd-restart', 'join', 'join', 'none'];
// After a join, mostly the survivor killed: the joiner then serves the clients from before it.
// kv also 'in-flight': a PUT asked once before the join, answered only by the joiner gone live.
const AFTER_JOIN_MIX = values['after-join']?.split(',').filter(Boolean)
  ?? ['kill-live', 'kill-live', ...(service === 'kv' ? ['in-flight'] : []), 'kill-joiner', 'corrupt', 'cut', 'none'];
for (const k of AFTER_JOIN_MIX) if (!AFTER_JOIN_FAULTS.includes(k) || (k === 'in-flight' && service !== 'kv')) {
  console.error(`faults: '${k}' is not an after-join fault of the ${service ?? 'seq'} runs (${AFTER_JOIN_FAULTS.join(', ')}; in-flight for kv only)`);
  process.exit(2);
}
const MAIN = service ? (values.kinds ? serviceKinds(values.kinds) : SERVICE_MIX)
  : values.kinds ? pick(values.kinds) : [...FAILURES, ...OPERATOR_FAULTS];
const ETCD_MAIN = service ? serviceKinds(values['etcd-kinds'] ?? 'arbiter-down') : pick(values['etcd-kinds'] ?? 'arbiter-down,rerun');
const nbdShare = Number(values['nbd-share']);
const OPERATOR = new Set(OPERATOR_FAULTS);
const guest = (name) => join(root, `guests/${name}/${name}.elf`);
// The failures' guest: seq (8 s alone, as in batches 1-4) or seq-mid (2 s), with the fault
// window scaled to it.
const failureGuest = values['failure-guest'];
if (!['seq', 'seq-mid'].includes(failureGuest)) {
  console.error(`faults: --failure-guest must be seq or seq-mid, got '${failureGuest}'`);
  process.exit(2);
}
const failureWindowMs = failureGuest === 'seq' ? 3200 : 1800;
if (values.link !== undefined && !['on', 'off'].includes(values.link)) {
  console.error(`faults: --link must be on or off, got '${values.link}'`);
  process.exit(2);
}
if (!['process', 'thread'].includes(values.proxy)) {
  console.error(`faults: --proxy must be process or thread, got '${values.proxy}'`);
  process.exit(2);
}
const nodeArgs = values.link === undefined ? [] : [values.link === 'on' ? '--heartbeat-link' : '--no-heartbeat-link'];

function serviceSpecFor(id, etcd) {
  const fault = etcd ? ETCD_MAIN[between(0, ETCD_MAIN.length)] : MAIN[between(0, MAIN.length)];
  // Mostly short stalls (below suspicion); now and then a long one, a partition that heals.
  const stalls = Array.from({ length: between(0, 4) }, () => [between(100, 2500), random() < 0.1 ? between(450, 900) : between(5, 200)]);
  return {
    id, fault, service, stalls,
    atMs: between(300, 2000),
    nbd: fault === 'nbd-restart' || random() < nbdShare,
    cli: join(root, 'bin/ftvm.js'), guestsDir: join(root, 'guests'),
    dir: mkdtempSync(join(tmpdir(), `ftvm-fault-${service}-${id}-`)),
    arbiterDownMs: between(300, 1500),
    nbdDownMs: between(300, 1500),
    // As the services tests: a loaded 2-core host stalls a process for tens of ms; the long
    // stalls above are the partitions meant to fail over.
    suspectMs: 600,
    proxy: values.proxy,
    ...(fault === 'join' ? {
      joinKill: random() < 0.5 ? 'primary' : 'backup',
      afterJoin: AFTER_JOIN_MIX[between(0, AFTER_JOIN_MIX.length)],
      afterJoinMs: between(100, 1500),
      joinStalls: Array.from({ length: between(0, 3) }, () => [between(0, 1500), between(5, 200)]),
    } : {}),
    ...(etcd ? { etcd } : {}),
  };
}

function specFor(id, etcd) {
  if (service) return serviceSpecFor(id, etcd);
  const fault = etcd ? ETCD_MAIN[between(0, ETCD_MAIN.length)] : MAIN[between(0, MAIN.length)];
  const operator = OPERATOR.has(fault);
  // Operator errors: short stalls only (below suspicion), on the 2 s guest.
  const stalls = Array.from({ length: between(0, operator ? 3 : 6) }, () => {
    const long = !operator && random() < 0.15;
    return [between(100, operator ? 1800 : failureWindowMs + 300), long ? between(450, 900) : between(5, SHORT_STALL_MS)];
  });
  const atMs = fault === 'nbd-restart' ? between(200, 1500)
    : operator ? (fault.startsWith('extra-') ? between(100, 1200) : between(150, 1800)) : between(150, failureWindowMs);
  const strays = ['bytes', 'http', 'wrong-key'];
  for (let i = strays.length - 1; i > 0; i--) {
    const j = between(0, i + 1);
    [strays[i], strays[j]] = [strays[j], strays[i]];
  }
  return {
    id, fault, atMs, stalls,
    cli: join(root, 'bin/ftvm.js'), guest: guest(operator ? 'seq-mid' : failureGuest), kvGuest: guest('kv'),
    nbdDownMs: between(300, 1500),
    dir: mkdtempSync(join(tmpdir(), `ftvm-fault-${id}-`)),
    arbiterDownMs: between(300, 1500),
    otherGuest: guest('hello'),
    otherMemMiB: [8, 32, 64][between(0, 3)],
    strays,
    previousGuest: guest('seq-short'),
    previousAtMs: between(50, 300),
    proxy: values.proxy,
    nodeArgs,
    ...(etcd ? { etcd } : {}),
  };
}

const runOne = (spec) => (service ? runServiceOnce(spec) : runOnce(spec));
console.log(`faults: ${service ? `the ${service} guest, ` : ''}seed ${seed}, ${runs} runs (${parallel} in parallel) + ${etcdRuns} etcd runs, proxy in ${values.proxy === 'thread' ? "the harness's thread" : 'its own process'}${!service && values.link ? `, heartbeat link ${values.link}` : ''}`);
const results = [];
/** A 'none' run in which a replica went live or lost the arbiter anyway. */
const failedOver = (r) => r.fault === 'none' && (r.failovers > 0 || r.exit.primary === '3' || r.exit.backup === '3');
/**
 * Spurious: failed over though only short stalls (below the calm-host suspicion timeout) were
 * injected. A 'none' run may also draw a long stall (450-900 ms, a partition that heals): a
 * failover there is detection doing its job, counted apart.
 */
const spurious = (r) => failedOver(r) && r.longStalls === 0;
/** A long stall: above the calm-host suspicion (seq runs); the service runs draw 5-200 ms or 450-900 ms under a 600 ms suspicion. */
const LONG_STALL_MS = service ? 200 : SHORT_STALL_MS;
const report = (r) => {
  results.push(r);
  const c = r.check;
  const flag = c.ok ? 'ok  ' : 'FAIL';
  const extras = r.extras.map((x) => ` ${x.name}=${x.exit}${x.missed ? '(missed)' : ''}`).join('');
  if (r.service) {
    const s = r.service;
    const joined = s.lines.find((l) => l.startsWith('join: '));
    console.log(`${flag} run ${String(r.id).padStart(4)} ${s.guest} ${r.fault.padEnd(13)} at ${String(r.atMs).padStart(4)} ms +${r.stalls} stalls  exit P=${r.exit.primary} B=${r.exit.backup}${r.exit.joiner ? ` J=${r.exit.joiner}` : ''}${joined ? ` (${joined.slice(6)})` : ''}  ${s.guest === 'kv' ? `acked ${s.acked}` : `answered ${s.answered}`}  outputs ${c.lines} dup ${c.duplicates} lost ${c.lost} double-live ${c.doubleLive}${r.failoverMs === undefined ? '' : `  first answer ${r.failoverMs.toFixed(0)} ms`}${spurious(r) ? '  SPURIOUS' : failedOver(r) ? '  failed over (long stall)' : ''}${c.ok ? '' : `  ${c.errors.slice(0, 2).join('; ')}`}`);
    if (c.ok && !values.keep) rmSync(r.dir, { recursive: true, force: true });
    return;
  }
  const b = r.beats;
  const beats = b?.primary || b?.backup ? `  beats P ${b.primary?.sent ?? '-'}>${b.proxy.datagrams.down}>${b.backup?.heard ?? '-'} B ${b.backup?.sent ?? '-'}>${b.proxy.datagrams.up}>${b.primary?.heard ?? '-'}` : '';
  console.log(`${flag} run ${String(r.id).padStart(4)} ${r.fault.padEnd(22)} at ${String(r.atMs).padStart(4)} ms +${r.stalls} stalls  exit P=${r.exit.primary} B=${r.exit.backup}${extras}  lines ${c.lines} dup ${c.duplicates} lost ${c.lost} double-live ${c.doubleLive}${r.failoverMs === undefined ? '' : `  failover ${r.failoverMs.toFixed(0)} ms`}${spurious(r) ? '  SPURIOUS' : failedOver(r) ? '  failed over (long stall)' : ''}${beats}${c.ok ? '' : `  ${c.errors.slice(0, 2).join('; ')}`}`);
  if (c.ok && !values.keep) rmSync(r.dir, { recursive: true, force: true });
};

let next = 0;
async function worker() {
  while (next < runs && Date.now() < deadline) {
    const spec = specFor(next++);
    const r = await runOne(spec);
    report({ ...r, dir: spec.dir, longStalls: spec.stalls?.filter(([, ms]) => ms > LONG_STALL_MS).length ?? 0 });
  }
}
await Promise.all(Array.from({ length: parallel }, worker));

if (etcdRuns > 0) {
  // Sequential: each run kills the one etcd.
  const etcd = await EtcdServer.start();
  try {
    for (let i = 0; i < etcdRuns && Date.now() < deadline; i++) {
      const spec = specFor(runs + i, etcd);
      const r = await runOne(spec);
      report({ ...r, dir: spec.dir, longStalls: spec.stalls?.filter(([, ms]) => ms > LONG_STALL_MS).length ?? 0 });
    }
  } finally {
    await etcd.destroy();
  }
}

const sum = (f) => results.reduce((n, r) => n + f(r), 0);
const byKind = {};
for (const r of results) if (r.fault !== 'none') byKind[r.fault] = (byKind[r.fault] ?? 0) + (r.struck ? 1 : 0);
byKind.stall = sum((r) => r.faults - (r.struck ? 1 : 0));
const runsByKind = {};
for (const r of results) runsByKind[r.fault] = (runsByKind[r.fault] ?? 0) + 1;
const failovers = results.map((r) => r.failoverMs).filter((v) => v !== undefined).sort((a, b) => a - b);
const summary = {
  seed,
  runs: results.length,
  faults: sum((r) => r.faults),
  faultsByKind: byKind,
  runsByKind,
  failed: sum((r) => (r.check.ok ? 0 : 1)),
  failedByKind: results.filter((r) => !r.check.ok).reduce((m, r) => ({ ...m, [r.fault]: (m[r.fault] ?? 0) + 1 }), {}),
  outages: sum((r) => (r.check.outage ? 1 : 0)),
  refusedBackups: sum((r) => r.extras.filter((x) => !x.missed).length),
  refusedOutputs: sum((r) => r.check.refusedOutputs),
  lost: sum((r) => r.check.lost),
  conflicts: sum((r) => r.check.conflicts),
  doubleLive: sum((r) => r.check.doubleLive),
  hung: sum((r) => (r.hung ? 1 : 0)),
  duplicates: sum((r) => r.check.duplicates),
  failovers: sum((r) => r.failovers),
  unprotectedKills: sum((r) => (r.unprotected ? 1 : 0)),
  ...(service ? {
    service,
    ackedPuts: sum((r) => r.service?.acked ?? 0),
    answered: sum((r) => r.service?.answered ?? 0),
    // Acknowledged PUTs that did not read back or were missing from the log on the disk.
    ackedPutsLost: sum((r) => r.check.errors.filter((e) => /^acknowledged PUT/.test(e)).length),
    appliedTwice: sum((r) => r.check.errors.filter((e) => /applied twice/.test(e)).length),
    dnsUnansweredOrWrong: sum((r) => r.check.errors.filter((e) => /: no answer after \d+ tries$|, zone says /.test(e)).length),
    joins: {
      runs: results.filter((r) => r.service?.join).length,
      joined: results.filter((r) => r.service?.join?.joined).length,
      after: results.filter((r) => r.service?.join?.joined).reduce((m, r) => ({ ...m, [r.service.join.after]: (m[r.service.join.after] ?? 0) + 1 }), {}),
      // Joiners that went live, and the client mappings they took from the snapshot.
      joinersLive: results.filter((r) => r.service?.join?.imported !== undefined).length,
      inFlightAnswered: results.filter((r) => r.service?.join?.inFlightAnswered === true).length,
      inFlightUnanswered: results.filter((r) => r.service?.join?.inFlightAnswered === false).length,
      mappingsFromSnapshots: sum((r) => r.service?.join?.imported ?? 0),
    },
  } : {}),
  spurious: {
    none: results.filter((r) => r.fault === 'none').length,
    spurious: results.filter(spurious).length,
    withLongStall: results.filter((r) => r.fault === 'none' && r.longStalls > 0).length,
    failedOverInLongStall: results.filter((r) => failedOver(r) && r.longStalls > 0).length,
  },
  ...(service ? {} : {
    // The heartbeat link's datagrams, both ways: sent by one node, relayed by the proxy, heard by
    // the other (runs where both nodes printed their link line), and dropped by injected stalls.
    beats: (() => {
      const both = results.filter((r) => r.beats?.primary && r.beats?.backup);
      if (both.length === 0) return undefined;
      const s = (f) => both.reduce((n, r) => n + f(r.beats), 0);
      return {
        runs: both.length,
        primaryToBackup: { sent: s((b) => b.primary.sent), relayed: s((b) => b.proxy.datagrams.down), heard: s((b) => b.backup.heard) },
        backupToPrimary: { sent: s((b) => b.backup.sent), relayed: s((b) => b.proxy.datagrams.up), heard: s((b) => b.primary.heard) },
        droppedByStalls: s((b) => b.proxy.datagrams.dropped),
      };
    })(),
  }),
  failoverMs: failovers.length ? { min: failovers[0], p50: failovers[Math.floor(failovers.length / 2)], max: failovers.at(-1), n: failovers.length } : undefined,
};
console.log(JSON.stringify(summary, null, 2));
if (values.json) writeFileSync(values.json, JSON.stringify({ summary, results }, null, 2));
process.exit(summary.failed === 0 ? 0 : 1);
