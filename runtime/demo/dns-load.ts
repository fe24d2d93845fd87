// The I/O demos (`ftvm demo --guest dns|kv`) and their tests: a fault-tolerant pair with a
// real disk and a real UDP forward, a client load through the forward, the primary killed at a
// seeded moment under that load, and a checker run over what the clients saw (and, for kv,
// over the disk). This file has the common scenario and the dns load; kv-load.ts the kv one.
import { Resolver } from 'node:dns/promises';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createPair, type Pair, type PairEvent, type PairOptions } from '../pair.js';
import { guestPath } from '../guests.js';
import { openIo, type OpenedIo } from '../io/open.js';
import { servicePort } from '../faults/service-port.js';

/** xorshift32: everything random in a demo follows from its seed. */
export function prng(seed: number): () => number {
  let x = (seed * 0x9e3779b1) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

// ---------------------------------------------------------------------------------------------
// The zone (guests/dns/zone.txt) as the checker's oracle.

export type RrType = 'A' | 'AAAA' | 'TXT' | 'NS' | 'SOA';

export interface Zone {
  /** Lower-case names without the trailing dot → type → values as Node's resolver returns them. */
  names: Map<string, Map<RrType, unknown[]>>;
}

/** RFC 4291 text → eight hex groups, so `2001:db8::80` and `2001:db8:0:0:0:0:0:80` compare equal. */
export function expandIpv6(text: string): string {
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...zeros, ...t].map((g) => parseInt(g, 16).toString(16)).join(':');
}

function txtStrings(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === ' ' || text[i] === '\t') { i++; continue; }
    let s = '';
    if (text[i] === '"') {
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        s += text[i++];
      }
      i++;
    } else {
      while (i < text.length && text[i] !== ' ' && text[i] !== '\t') s += text[i++];
    }
    out.push(s);
  }
  return out;
}

export function parseZone(text: string): Zone {
  const names = new Map<string, Map<RrType, unknown[]>>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)\s+(\S+)\s+(\d+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`zone: bad line ${JSON.stringify(line)}`);
    const name = m[1]!.toLowerCase().replace(/\.$/, '');
    const type = m[2]!.toUpperCase() as RrType;
    const value = m[4]!.trim();
    let v: unknown;
    if (type === 'A') v = value;
    else if (type === 'AAAA') v = expandIpv6(value);
    else if (type === 'TXT') v = txtStrings(value);
    else v = value;
    let byType = names.get(name);
    if (!byType) names.set(name, (byType = new Map()));
    byType.set(type, [...(byType.get(type) ?? []), v]);
  }
  return { names };
}

export const zonePath = (): string => join(dirname(guestPath('dns')), 'zone.txt');

// ---------------------------------------------------------------------------------------------
// The dns load: resolvers querying names of the zone through the forwarded port.

export interface DnsQuery {
  name: string;
  type: 'A' | 'AAAA' | 'TXT';
}

/** What a query must get: values (sorted, comparable), or the resolver's error code. */
export function expected(zone: Zone, q: DnsQuery): { values: string[] } | { code: 'ENOTFOUND' | 'ENODATA' } {
  const byType = zone.names.get(q.name.toLowerCase());
  if (!byType) return { code: 'ENOTFOUND' };
  const vs = byType.get(q.type);
  if (!vs) return { code: 'ENODATA' };
  return { values: vs.map((v) => JSON.stringify(v)).sort() };
}

/** The names the load asks for: every A/AAAA/TXT of the zone, a NODATA, and fresh NXDOMAINs. */
const ASKED: DnsQuery[] = [
  { name: 'www.example.test', type: 'A' },
  { name: 'ns1.example.test', type: 'A' },
  { name: 'ns2.example.test', type: 'A' },
  { name: 'example.test', type: 'A' },
  { name: 'a.deep.example.test', type: 'A' },
  { name: 'www.example.test', type: 'AAAA' },
  { name: 'v6only.example.test', type: 'AAAA' },
  { name: 'hello.example.test', type: 'TXT' },
  { name: 'quote.example.test', type: 'TXT' },
  { name: 'v6only.example.test', type: 'A' }, // NODATA
];

export interface QueryRecord {
  q: DnsQuery;
  startMs: number;
  /** When the (final) answer came; undefined if it never did. */
  endMs: number | undefined;
  /** Sends: 1 + retries. */
  tries: number;
  values?: string[];
  code?: string;
}

/** Load progress, as both loads report it to the scenario. */
export interface Load {
  /** Requests answered so far (the kill is scheduled on this count). */
  readonly answered: number;
  /** Time of each answer, for before/after counts. */
  readonly answerTimes: number[];
  readonly retries: number;
  start(): void;
  /** Stop issuing new requests; resolves once those in flight are answered or given up. */
  stop(): Promise<void>;
}

export interface DnsLoadOptions {
  port: number;
  seed: number;
  /** Concurrent resolvers, each with one query in flight. */
  concurrency?: number;
  /** Wait for an answer before a retry. */
  timeoutMs?: number;
  /** A query unanswered this long after it started counts as lost. */
  giveUpMs?: number;
}

export class DnsLoad implements Load {
  readonly records: QueryRecord[] = [];
  readonly answerTimes: number[] = [];
  answered = 0;
  retries = 0;
  private stopping = false;
  private workers: Promise<void>[] = [];
  private nx = 0;
  private readonly random: () => number;

  constructor(private readonly opts: DnsLoadOptions) {
    this.random = prng(opts.seed ^ 0x5eed);
  }

  start(): void {
    for (let w = 0; w < (this.opts.concurrency ?? 4); w++) this.workers.push(this.worker());
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
  }

  private next(): DnsQuery {
    const r = this.random();
    // One query in eight is for a name that does not exist (NXDOMAIN), each name fresh.
    if (r < 0.125) return { name: `nx${this.nx++}.example.test`, type: (['A', 'AAAA', 'TXT'] as const)[this.nx % 3]! };
    return ASKED[Math.floor(this.random() * ASKED.length)]!;
  }

  private async worker(): Promise<void> {
    const timeout = this.opts.timeoutMs ?? 250;
    const r = new Resolver({ timeout, tries: 1 });
    r.setServers([`127.0.0.1:${this.opts.port}`]);
    while (!this.stopping) {
      const q = this.next();
      const rec: QueryRecord = { q, startMs: performance.now(), endMs: undefined, tries: 0 };
      this.records.push(rec);
      while (rec.endMs === undefined && performance.now() - rec.startMs < (this.opts.giveUpMs ?? 10_000)) {
        rec.tries++;
        try {
          rec.values = await resolve(r, q);
          rec.endMs = performance.now();
        } catch (e) {
          const code = (e as { code?: string }).code ?? String(e);
          if (code === 'ETIMEOUT' || code === 'ECONNREFUSED') {
            this.retries++;
            // Refused (no server on the port: between a kill and the new primary's bind) comes
            // back at once: wait a little, or the retries spin and starve the takeover.
            if (code === 'ECONNREFUSED') await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          rec.code = code;
          rec.endMs = performance.now();
        }
      }
      if (rec.endMs !== undefined) {
        this.answered++;
        this.answerTimes.push(rec.endMs);
      }
    }
  }
}

async function resolve(r: Resolver, q: DnsQuery): Promise<string[]> {
  switch (q.type) {
    case 'A': return (await r.resolve4(q.name)).map((v) => JSON.stringify(v)).sort();
    case 'AAAA': return (await r.resolve6(q.name)).map((v) => JSON.stringify(expandIpv6(v))).sort();
    case 'TXT': return (await r.resolveTxt(q.name)).map((v) => JSON.stringify(v)).sort();
  }
}

/** Every query answered, and answered as the zone says. */
export function checkDns(zone: Zone, records: QueryRecord[]): { ok: boolean; unanswered: number; wrong: number; errors: string[] } {
  let unanswered = 0;
  let wrong = 0;
  const errors: string[] = [];
  for (const rec of records) {
    const name = `${rec.q.name} ${rec.q.type}`;
    if (rec.endMs === undefined) {
      unanswered++;
      errors.push(`${name}: no answer after ${rec.tries} tries`);
      continue;
    }
    const want = expected(zone, rec.q);
    const got = rec.values ? { values: rec.values } : { code: rec.code };
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      wrong++;
      errors.push(`${name}: got ${JSON.stringify(got)}, zone says ${JSON.stringify(want)}`);
    }
  }
  return { ok: unanswered === 0 && wrong === 0, unanswered, wrong, errors };
}

// ---------------------------------------------------------------------------------------------
// The scenario: a pair with I/O, a load, a kill, a check.

export interface ScenarioOptions {
  seed: number;
  /** Keep the load going this long after the first answer of the new primary. */
  afterFailoverMs?: number;
  /** No kill: a fault-free run of this length (ms) under load. */
  noKillRunMs?: number;
  /** Progress lines (the CLI prints them). */
  say?: (line: string) => void;
  /** Extra pair options (timing, batch). */
  pair?: Partial<PairOptions>;
}

export interface ScenarioResult {
  seed: number;
  killAfterAnswers: number;
  killDelayMs: number;
  killed: boolean;
  /** Why a run that was to kill the primary did not: the pair had lost its protection before. */
  unprotectedBeforeKill?: string;
  failovers: number;
  /** kill → first network output released by the new primary. */
  failoverMs: number | undefined;
  answeredBefore: number;
  answeredAfter: number;
  retries: number;
  /** Released outputs whose index had been released already (re-issued at go-live). */
  duplicateOutputs: number;
  /** How far back before the kill the oldest re-issued output had first been released. */
  reissuedBackMs: number | undefined;
  /** Output indices never released (a gap): lost outputs. */
  lostOutputs: number;
  /** Net frames / disk writes released, by node. */
  released: Record<string, { net: number; disk: number }>;
  logBytes: number;
  logEntries: number;
  /** Log bytes per answered request before the kill (the log is the old primary's channel). */
  logBytesPerRequest: number;
  events: PairEvent[];
  durationMs: number;
  /** Guest-specific checker lines and verdict. */
  check: { ok: boolean; lines: string[]; errors: string[] };
}

export interface GuestScenario<L extends Load> {
  guest: 'dns' | 'kv';
  guestPort: number;
  /** Make the disk image at this path. */
  makeDisk(path: string): void;
  /** The console line the guest prints once it serves. */
  ready: RegExp;
  /** `datagramsIn`: client datagrams the UDP forward has received (requests and retries). */
  load(port: number, seed: number, ctx: { datagramsIn: () => number }): L;
  /** Seeded kill moment: after this many answered requests. */
  killAfter(random: () => number): number;
  /** After the load stopped, with the pair still live. */
  verify(load: L, ctx: { port: number }): Promise<void>;
  /** After the pair stopped and the disk is closed. */
  check(load: L, ctx: { diskPath: string }): { ok: boolean; lines: string[]; errors: string[] };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runScenario<L extends Load>(g: GuestScenario<L>, opts: ScenarioOptions): Promise<ScenarioResult> {
  const say = opts.say ?? (() => {});
  const random = prng(opts.seed);
  const killAfterAnswers = g.killAfter(random);
  const killDelayMs = Math.floor(random() * 20);
  const dir = mkdtempSync(join(tmpdir(), `ftvm-demo-${g.guest}-`));
  const diskPath = join(dir, `${g.guest}.img`);
  g.makeDisk(diskPath);
  let io: OpenedIo | undefined;
  let pair: Pair | undefined;
  let started: Promise<unknown> | undefined;
  const t0 = performance.now();
  try {
    // A free port below the ephemeral range (faults/service-port.ts): while no replica holds it,
    // a resolver's own socket could be given it and take its query back as an answer.
    for (let attempt = 1; !io; attempt++) {
      const servicePortNow = await servicePort();
      io = await openIo({ disk: `file:${diskPath}`, net: [`udp:127.0.0.1:${servicePortNow}:${g.guestPort}`] }).catch((e: unknown) => {
        if (attempt < 3 && e instanceof Error && / is in use$/.test(e.message)) return undefined;
        throw e;
      });
    }
    const port = io.udp!.boundPorts[0]!;
    pair = createPair({ ...opts.pair, image: readFileSync(guestPath(g.guest)), disk: io.disk!.backend!, net: io.net!.backend! });
    const p = pair;
    const events: PairEvent[] = [];
    let consoleText = '';
    let killedAtMs: number | undefined;
    let firstAfterMs: number | undefined;
    let nextIndex = 0;
    let duplicateOutputs = 0;
    let lostOutputs = 0;
    const released: Record<string, { net: number; disk: number }> = {};
    const firstReleaseMs = new Map<number, number>();
    let oldestReissuedMs: number | undefined;
    p.events$.subscribe((e) => {
      events.push(e);
      if (e.type === 'failover' || e.type === 'killed' || e.type === 'arbiter' || e.type === 'divergence' || e.type === 'error') {
        say(`[${((performance.now() - t0) / 1000).toFixed(3)}s] ${e.node}: ${e.type} ${e.detail}`);
      }
    });
    p.outputs$.subscribe((o) => {
      if (o.index < nextIndex) {
        duplicateOutputs++;
        const first = firstReleaseMs.get(o.index);
        if (first !== undefined && (oldestReissuedMs === undefined || first < oldestReissuedMs)) oldestReissuedMs = first;
      } else {
        if (killedAtMs === undefined) firstReleaseMs.set(o.index, performance.now());
        lostOutputs += o.index - nextIndex;
        nextIndex = o.index + 1;
      }
      if (o.output.kind === 'console') consoleText += String.fromCharCode(o.output.byte);
      if (o.output.kind === 'net' || o.output.kind === 'disk-write') {
        const r = (released[o.node] ??= { net: 0, disk: 0 });
        if (o.output.kind === 'net') r.net++;
        else r.disk++;
      }
      if (killedAtMs !== undefined && firstAfterMs === undefined && o.node !== 'primary' && o.output.kind === 'net') firstAfterMs = performance.now();
    });
    started = p.start();
    started.catch(() => {});
    const deadline = performance.now() + 30_000;
    while (!g.ready.test(consoleText)) {
      if (performance.now() > deadline) throw new Error(`${g.guest}: the guest did not come up (console: ${JSON.stringify(consoleText)})`);
      await sleep(5);
    }
    say(`${g.guest} guest ready on 127.0.0.1:${port}: ${consoleText.trim()}`);
    const udp = io.udp!;
    const load = g.load(port, opts.seed, { datagramsIn: () => udp.stats.datagramsIn });
    load.start();
    let logAtKill = { bytes: 0, entries: 0, answered: 0 };
    let unprotectedBeforeKill: string | undefined;
    if (opts.noKillRunMs !== undefined) {
      await sleep(opts.noKillRunMs);
    } else {
      while (load.answered < killAfterAnswers) {
        if (performance.now() > deadline + 30_000) throw new Error(`${g.guest}: only ${load.answered} answers, no kill`);
        await sleep(1);
      }
      await sleep(killDelayMs);
      const chart = p.actor.getSnapshot();
      if (!chart.matches('protected')) {
        // A host that starved one replica's thread past the suspicion timeout made the other
        // declare it dead before the kill: one replica serves alone. Killing it would be a
        // second fault, which no pair survives; the run goes on without the kill instead.
        unprotectedBeforeKill = `the pair was ${JSON.stringify(chart.value)} (live: ${p.stats().live ?? 'none'}) at the kill moment`;
        say(`no kill: ${unprotectedBeforeKill}`);
        await sleep(opts.afterFailoverMs ?? 1500);
      } else {
        const s = p.stats();
        logAtKill = { bytes: s.logBytes, entries: s.logEntries, answered: load.answered };
        killedAtMs = performance.now();
        p.kill('primary');
        const failDeadline = killedAtMs + 10_000;
        while (firstAfterMs === undefined && performance.now() < failDeadline) await sleep(2);
        await sleep(opts.afterFailoverMs ?? 1500);
      }
    }
    await load.stop();
    await g.verify(load, { port });
    const stats = p.stats();
    await p.stop();
    await started;
    await io.close();
    io = undefined;
    const check = g.check(load, { diskPath });
    const before = killedAtMs === undefined ? load.answerTimes.length : load.answerTimes.filter((t) => t < killedAtMs!).length;
    const loggedBytes = killedAtMs === undefined ? stats.logBytes : logAtKill.bytes;
    const loggedAnswers = killedAtMs === undefined ? load.answered : logAtKill.answered;
    return {
      seed: opts.seed,
      killAfterAnswers,
      killDelayMs,
      killed: killedAtMs !== undefined,
      ...(unprotectedBeforeKill === undefined ? {} : { unprotectedBeforeKill }),
      failovers: events.filter((e) => e.type === 'failover').length,
      failoverMs: killedAtMs !== undefined && firstAfterMs !== undefined ? firstAfterMs - killedAtMs : undefined,
      answeredBefore: before,
      answeredAfter: load.answerTimes.length - before,
      retries: load.retries,
      duplicateOutputs,
      reissuedBackMs: killedAtMs !== undefined && oldestReissuedMs !== undefined ? killedAtMs - oldestReissuedMs : undefined,
      lostOutputs,
      released,
      logBytes: stats.logBytes,
      logEntries: stats.logEntries,
      logBytesPerRequest: loggedBytes / Math.max(1, loggedAnswers),
      events,
      durationMs: performance.now() - t0,
      check,
    };
  } finally {
    if (pair) {
      await pair.stop().catch(() => {});
      await started?.catch(() => {});
    }
    await io?.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The summary lines `ftvm demo --guest dns|kv` prints. */
export function summary(r: ScenarioResult, what: string): string[] {
  const fmt = (n: number): string => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(2)} MiB`);
  const passed = r.check.ok && r.lostOutputs === 0 && (r.killed ? r.failovers === 1 : true);
  return [
    `${what} answered before failover: ${r.answeredBefore}`,
    `${what} answered after failover: ${r.answeredAfter}`,
    `client retries: ${r.retries}`,
    `outputs re-issued at go-live (duplicates for the clients to drop): ${r.duplicateOutputs}${r.reissuedBackMs === undefined ? '' : `, the oldest first released ${r.reissuedBackMs.toFixed(0)} ms before the kill`}`,
    `lost: ${r.lostOutputs}`,
    ...(r.unprotectedBeforeKill === undefined ? [] : [`not killed: ${r.unprotectedBeforeKill}`]),
    ...r.check.lines,
    `failovers: ${r.failovers}`,
    `failover time (kill -> first answer from the new primary): ${r.failoverMs === undefined ? 'n/a' : `${r.failoverMs.toFixed(1)} ms`}`,
    `log: ${fmt(r.logBytes)} in ${r.logEntries} entries, ${r.logBytesPerRequest.toFixed(0)} bytes per ${what === 'queries' ? 'query' : 'request'} before failover`,
    ...r.check.errors.slice(0, 10).map((e) => `error: ${e}`),
    passed ? 'checker: PASS' : 'checker: FAIL',
  ];
}

export const scenarioPassed = (r: ScenarioResult): boolean => r.check.ok && r.lostOutputs === 0 && (r.killed ? r.failovers === 1 : true);

export const dnsScenario: GuestScenario<DnsLoad> = {
  guest: 'dns',
  guestPort: 53,
  makeDisk: (path) => copyFileSync(join(dirname(guestPath('dns')), 'zone.img'), path),
  ready: /dns: serving \d+ records\n/,
  load: (port, seed) => new DnsLoad({ port, seed }),
  killAfter: (random) => 20 + Math.floor(random() * 150),
  verify: async () => {},
  check(load) {
    const zone = parseZone(readFileSync(zonePath(), 'utf8'));
    const c = checkDns(zone, load.records);
    const nx = load.records.filter((r) => r.code === 'ENOTFOUND').length;
    return {
      ok: c.ok && load.records.length > 0,
      lines: [
        `queries: ${load.records.length} (${nx} NXDOMAIN), answered correctly: ${load.records.length - c.unanswered - c.wrong}, unanswered: ${c.unanswered}, wrong: ${c.wrong}`,
      ],
      errors: c.errors,
    };
  },
};

/** A zeroed disk of `bytes` (the kv guest's empty store). */
export function zeroedDisk(path: string, bytes: number): void {
  writeFileSync(path, '');
  truncateSync(path, bytes);
}
