// `--dashboard`: a page on 127.0.0.1 that shows a running pair. Charts are drawn from the
// machine definitions (runtime/diagram); the actors' current states come from XState
// inspection (the same `inspect` option `--inspect` uses); counters and small charts come
// from pair.stats() and pair.events$. Everything is served from this package: the page works
// offline. Live updates go out as Server-Sent Events; commands come in as POSTs.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Subscription } from 'rxjs';
import type { AnyActorRef, AnyStateMachine, InspectionEvent } from 'xstate';
import type { Pair, PairEvent } from '../pair.js';
import { drawChart, loadMachines } from '../diagram/index.js';
import type { InspectObserver } from '../inspect/index.js';

export interface DashboardOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Charts to draw; all of machines/ by default. */
  machines?: Map<string, AnyStateMachine>;
  /** Sampling period of pair.stats(), and of the page's updates. */
  tickMs?: number;
}

export interface ActorView {
  sessionId: string;
  /** The actor's id: the node's name for PrimaryNode and BackupNode, `pair` for the pair chart, `<node>.cpu` for a node's CPU chart. */
  node: string;
  /** The chart's name (its `allMachines` key), or undefined if it is not one of ours. */
  chart: string | undefined;
  value: unknown;
  status: string;
  startedMs: number;
}

export interface TimelineItem {
  atMs: number;
  node: string;
  type: string;
  detail: string;
}

export interface Sample {
  atMs: number;
  mips: number;
  lagInstructions: number;
  /** Log entries sent but not yet acknowledged by the backup. */
  unacked: number;
  logBytesPerSec: number;
  logEntriesPerSec: number;
  held: number;
  outputs: number;
}

export interface Dashboard {
  readonly url: string;
  readonly port: number;
  /** Pass to createPair({ inspect }) so the dashboard sees every actor. */
  readonly inspect: InspectObserver;
  /** Show this pair: its stats, events and outputs, and let the buttons act on it. */
  attach(pair: Pair, info?: { guest?: string }): void;
  close(): Promise<void>;
}

const STATIC_FILES: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
};
const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

/** The page's files sit beside this module in the sources, and beside dist/ in a build. */
function staticDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const d of [join(here, 'static'), join(here, '..', '..', '..', 'runtime', 'dashboard', 'static')]) {
    if (existsSync(join(d, 'index.html'))) return d;
  }
  throw new Error(`dashboard: static files not found near ${here}`);
}

const TIMELINE_KEEP = 400;
const SAMPLES_KEEP = 300;
const CONSOLE_KEEP = 4000;

export async function startDashboard(opts: DashboardOptions = {}): Promise<Dashboard> {
  const dir = staticDir();
  const machines = opts.machines ?? (await loadMachines());
  const charts: { name: string; machineId: string; svg: string; states: string[] }[] = [];
  const chartOfMachineId = new Map<string, string>();
  // The pair (the whole story) and the FT protocol's charts first, then the rest (devices) by name.
  const FIRST = ['pair', 'primary', 'backup', 'cpu', 'channel', 'arbiter-client'];
  const rank = (n: string): number => (FIRST.includes(n) ? FIRST.indexOf(n) : FIRST.length);
  const ordered = [...machines].sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  const drawn = await Promise.all(ordered.map(([name, m]) => drawChart(m, name)));
  ordered.forEach(([name, m], i) => {
    const d = drawn[i]!;
    charts.push({ name, machineId: m.id, svg: d.svg, states: d.graph.states.map((s) => s.id).filter((id) => id !== '') });
    chartOfMachineId.set(m.id, name);
  });

  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const actors = new Map<string, ActorView>();
  const timeline: TimelineItem[] = [];
  const samples: Sample[] = [];
  let consoleTail = '';
  let outputs = 0;
  let duplicates = 0;
  let lastIndex = -1;
  let failovers = 0;
  let finished: string | undefined;
  let pair: Pair | undefined;
  let guest: string | undefined;
  const subs: Subscription[] = [];
  const lastStateOf = new Map<string, string>();

  const note = (item: TimelineItem): void => {
    timeline.push(item);
    if (timeline.length > TIMELINE_KEEP) timeline.shift();
  };

  const inspect: InspectObserver = (e: InspectionEvent) => {
    if (e.type !== '@xstate.snapshot' && e.type !== '@xstate.actor') return;
    const ref = e.actorRef as AnyActorRef;
    // Every actor carries the logic it runs; for a machine that is the (provided) chart, whose id we know.
    const logic = (ref as unknown as { logic?: { id?: unknown } }).logic;
    // NOTE: an `@xstate.actor` event comes while the actor initializes, when its snapshot
    // cannot be read yet; its first `@xstate.snapshot` follows at once.
    const snap = (e.type === '@xstate.snapshot' ? e.snapshot : undefined) as { value?: unknown; status?: string } | undefined;
    const prev = actors.get(ref.sessionId);
    if (!snap && prev) return;
    actors.set(ref.sessionId, {
      sessionId: ref.sessionId,
      node: ref.id,
      chart: typeof logic?.id === 'string' ? chartOfMachineId.get(logic.id) : undefined,
      value: snap?.value,
      status: snap?.status ?? 'active',
      startedMs: prev?.startedMs ?? now(),
    });
  };

  let last: { atMs: number; icount: number; logBytes: number; logEntries: number; live: string | undefined } | undefined;
  const sample = (): void => {
    if (!pair) return;
    const s = pair.stats();
    const atMs = now();
    const icount = s.primary?.icount ?? last?.icount ?? 0;
    const dt = last ? (atMs - last.atMs) / 1000 : 0;
    // A new primary restarts nothing: it is the backup's machine, whose icount went on.
    const rate = (a: number, b: number): number => (dt > 0 ? Math.max(0, a - b) / dt : 0);
    samples.push({
      atMs,
      mips: last && last.live === s.live ? rate(icount, last.icount) / 1e6 : 0,
      lagInstructions: s.backup?.lagInstructions ?? 0,
      unacked: s.primary?.lagEntries ?? 0,
      logBytesPerSec: last ? rate(s.logBytes, last.logBytes) : 0,
      logEntriesPerSec: last ? rate(s.logEntries, last.logEntries) : 0,
      held: s.primary?.held ?? 0,
      outputs,
    });
    if (samples.length > SAMPLES_KEEP) samples.shift();
    last = { atMs, icount, logBytes: s.logBytes, logEntries: s.logEntries, live: s.live };
  };

  const view = () => {
    const s = pair?.stats();
    return {
      atMs: now(),
      guest,
      attached: pair !== undefined,
      finished,
      stats: s ?? null,
      outputs,
      duplicates,
      failovers,
      console: consoleTail,
      actors: [...actors.values()],
    };
  };

  // Server-Sent Events: each tick sends the view, the newest sample and new timeline items.
  const clients = new Set<{ res: ServerResponse; sentTimeline: number }>();
  let timelineBase = 0;
  const send = (res: ServerResponse, event: string, data: unknown): void => {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const tick = setInterval(() => {
    sample();
    const total = timelineBase + timeline.length;
    for (const c of clients) {
      const fresh = timeline.slice(Math.max(0, c.sentTimeline - timelineBase));
      c.sentTimeline = total;
      send(c.res, 'tick', { view: view(), sample: samples[samples.length - 1] ?? null, timeline: fresh });
    }
  }, opts.tickMs ?? 200);
  // Keep `timelineBase` in step with items dropped from the front of `timeline`.
  const noteItem = (item: TimelineItem): void => {
    if (timeline.length === TIMELINE_KEEP) timelineBase++;
    note(item);
  };

  const command = (name: string): { status: number; message: string } => {
    if (!pair) return { status: 409, message: 'no pair is running yet' };
    if (finished) return { status: 409, message: `the run is over (${finished})` };
    switch (name) {
      case 'kill-primary': {
        const live = pair.stats().live;
        if (!live) return { status: 409, message: 'no live primary to kill' };
        pair.kill('primary');
        return { status: 200, message: `killed the primary (${live})` };
      }
      case 'kill-backup':
        if (!pair.stats().backup) return { status: 409, message: 'there is no backup to kill' };
        pair.kill('backup');
        return { status: 200, message: 'killed the backup' };
      case 'cut-channel':
        pair.cutChannel();
        return { status: 200, message: 'cut the logging channel: exactly one side goes on' };
      case 'add-backup': {
        // Re-protection (DESIGN §3): a new backup joins the live primary from a snapshot. The
        // pair refuses (and says why) unless its chart is `unprotected` with the primary here.
        try {
          pair.addBackup();
        } catch (e) {
          return { status: 409, message: (e as Error).message };
        }
        return { status: 200, message: `adding a backup to ${pair.stats().live ?? 'the live primary'}: it joins from a snapshot` };
      }
      default:
        return { status: 404, message: `no such command: ${name}` };
    }
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method === 'GET' && url.pathname in STATIC_FILES) {
      const file = STATIC_FILES[url.pathname]!;
      res.writeHead(200, { 'content-type': TYPES[file.split('.').pop()!]!, 'cache-control': 'no-store' });
      res.end(readFileSync(join(dir, file)));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/charts') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(charts));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/state') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ view: view(), samples, timeline }));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      const c = { res, sentTimeline: timelineBase + timeline.length };
      send(res, 'init', { charts, view: view(), samples, timeline });
      clients.add(c);
      req.on('close', () => clients.delete(c));
      return;
    }
    const m = /^\/api\/([a-z-]+)$/.exec(url.pathname);
    if (req.method === 'POST' && m) {
      req.resume();
      const r = command(m[1]!);
      if (r.status === 200) noteItem({ atMs: now(), node: 'dashboard', type: 'command', detail: r.message });
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: r.status === 200, message: r.message }));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => {
      // Nothing will close this dashboard: its tick must not keep the process alive.
      clearInterval(tick);
      reject(e);
    });
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    inspect,
    attach(p, info) {
      pair = p;
      guest = info?.guest;
      subs.push(
        p.events$.subscribe({
          next: (e: PairEvent) => {
            if (e.type === 'state') {
              // Nodes report every snapshot, acks included; the timeline keeps only changes.
              if (lastStateOf.get(e.node) === e.detail) return;
              lastStateOf.set(e.node, e.detail);
            }
            if (e.type === 'failover') failovers++;
            noteItem({ atMs: now(), node: e.node, type: e.type, detail: e.detail });
          },
          complete: () => {
            finished ??= 'the pair stopped';
          },
        }),
      );
      subs.push(
        p.outputs$.subscribe((o) => {
          // Outputs are numbered; after a failover some may come again (DESIGN §3 duplicates).
          if (o.index <= lastIndex) {
            duplicates++;
            return;
          }
          lastIndex = o.index;
          outputs++;
          if (o.output.kind === 'console') {
            consoleTail += String.fromCharCode(o.output.byte);
            if (consoleTail.length > CONSOLE_KEEP) consoleTail = consoleTail.slice(-CONSOLE_KEEP / 2);
          } else if (o.output.kind === 'power') {
            finished = `guest powered off with code ${o.output.code}`;
            noteItem({ atMs: now(), node: o.node, type: 'power-off', detail: finished });
          }
        }),
      );
    },
    async close() {
      clearInterval(tick);
      for (const s of subs) s.unsubscribe();
      for (const c of clients) c.res.end();
      clients.clear();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
