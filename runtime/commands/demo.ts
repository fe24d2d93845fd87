import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { createPair, type PairEvent } from '../pair.js';
import { guestPath } from '../guests.js';
import { SeqChecker } from '../demo/seq-checker.js';
import { CliError, errorLine, nonNegativeInt, readImage } from './common.js';
import { startViews, takeViewFlags, ViewFlagError } from '../dashboard/cli.js';
import { dnsScenario, prng, runScenario, scenarioPassed, summary } from '../demo/dns-load.js';
import { kvScenario } from '../demo/kv-load.js';

const USAGE = 'demo [--seed N] [--guest seq|seq-short|dns|kv] [--backup-in worker|thread] [--quiet] [--inspect [PORT]] [--dashboard [PORT]]';


const fmtBytes = (n: number): string => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(2)} MiB`);

async function demo(argv: string[]): Promise<number> {
  const { rest, flags } = takeViewFlags(argv);
  const { values } = parseArgs({
    args: rest,
    options: { seed: { type: 'string' }, guest: { type: 'string' }, 'backup-in': { type: 'string' }, quiet: { type: 'boolean', default: false } },
  });
  const seed = nonNegativeInt('seed', values.seed, Math.floor(Math.random() * 1e6) + 1);
  const guest = values.guest ?? 'seq';
  if (guest === 'dns' || guest === 'kv') return ioDemo(guest, seed, values.quiet === true, flags.inspect !== undefined || flags.dashboard !== undefined);
  if (guest !== 'seq' && guest !== 'seq-short') throw new CliError(`--guest must be seq, seq-short, dns or kv, got '${guest}'`);
  const totalLines = guest === 'seq' ? 2000 : 50;
  // Charts are inspected in this thread only: --inspect and --dashboard need the backup here.
  const viewing = flags.inspect !== undefined || flags.dashboard !== undefined;
  // The backup in this thread by default: the seq guest idles between lines, so a second core buys
  // little here, and one thread fails over faster (60 + 30 ms detection against 200 + 100 ms).
  const backupIn = values['backup-in'] ?? 'thread';
  if (viewing && backupIn === 'worker') throw new CliError('--inspect and --dashboard need --backup-in thread');
  if (backupIn !== 'worker' && backupIn !== 'thread') throw new CliError(`--backup-in must be worker or thread, got '${backupIn}'`);
  const say = (s: string): void => { if (!values.quiet) process.stdout.write(s); };
  // First, so that a port in use is the only thing said.
  const views = await startViews(flags);

  const random = prng(seed);
  const killAtLine = 1 + Math.floor(random() * (totalLines * 0.8));
  const killDelayMs = Math.floor(random() * 20);
  // With a dashboard the user kills the primary (its button); no seeded kill then.
  const autoKill = flags.dashboard === undefined;
  if (autoKill) say(`ftvm demo: guest ${guest}, seed ${seed}: the primary will be killed ${killDelayMs} ms after line ${killAtLine}\n`);
  else say(`ftvm demo: guest ${guest}: press "Kill primary" on the dashboard\n`);

  const pair = createPair({ image: readImage(guestPath(guest)), backupIn, ...(views.inspect ? { inspect: views.inspect } : {}) });
  views.attach(pair, { guest });
  const checker = new SeqChecker();
  let killedAtMs: number | undefined;
  let firstAfterFailoverMs: number | undefined;
  let killScheduled = false;
  let outputsBefore = 0;
  const log: PairEvent[] = [];
  const t0 = performance.now();

  pair.events$.subscribe((e) => {
    log.push(e);
    if (e.type === 'failover' || e.type === 'killed' || e.type === 'arbiter' || e.type === 'divergence' || e.type === 'error') {
      say(`\n[${((performance.now() - t0) / 1000).toFixed(3)}s] ${e.node}: ${e.type} ${e.detail}\n`);
    }
  });
  pair.outputs$.subscribe((o) => {
    if (killedAtMs !== undefined && o.node !== 'primary' && firstAfterFailoverMs === undefined) firstAfterFailoverMs = performance.now();
    if (killedAtMs === undefined) outputsBefore++;
    checker.accept(o);
    if (autoKill && !killScheduled && checker.lines >= killAtLine) {
      killScheduled = true;
      setTimeout(() => {
        killedAtMs = performance.now();
        pair.kill('primary');
      }, killDelayMs);
    }
  });

  const status = setInterval(() => {
    const s = pair.stats();
    const p = s.primary;
    const b = s.backup;
    say(`\r${s.live ?? '-'} icount ${p?.icount ?? 0}  backup lag ${b ? b.lagInstructions : '-'} insns  log ${fmtBytes(s.logBytes)}  held ${p?.held ?? 0}  lines ${checker.lines}/${totalLines}   `);
  }, 250);
  let outcome;
  try {
    outcome = await pair.start();
  } finally {
    clearInterval(status);
  }
  const seconds = (performance.now() - t0) / 1000;
  const s = pair.stats();
  const icount = s.primary?.icount ?? 0;
  const failoverMs = killedAtMs !== undefined && firstAfterFailoverMs !== undefined ? firstAfterFailoverMs - killedAtMs : undefined;
  say('\n');
  const summary = [
    `outputs before failover: ${outputsBefore}`,
    `outputs after failover: ${checker.nextIndex - outputsBefore}`,
    `duplicates discarded: ${checker.duplicates}`,
    `lost: ${checker.lost}`,
    `lines: ${checker.lines}/${totalLines}, checksums ${checker.errors.length === 0 ? 'all correct' : 'WRONG'}`,
    `failovers: ${outcome.failovers}`,
    `failover time (kill -> first output from the new primary): ${failoverMs === undefined ? 'n/a' : `${failoverMs.toFixed(1)} ms`}`,
    `log: ${fmtBytes(s.logBytes)} in ${s.logEntries} entries before failover, ${((s.logBytes * 1000) / Math.max(1, icount)).toFixed(3)} bytes per 1000 instructions`,
    `guest exit code: ${outcome.code ?? 'none'}, ${icount} instructions in ${seconds.toFixed(2)} s`,
  ];
  for (const e of checker.errors.slice(0, 10)) summary.push(`error: ${e}`);
  const passed = checker.ok && outcome.code === 0 && (killScheduled ? outcome.failovers === 1 : true);
  summary.push(passed ? 'checker: PASS' : 'checker: FAIL');
  process.stdout.write(summary.join('\n') + '\n');
  if (views.dashboard) {
    // The page is worth a look after the run too: keep serving until Ctrl-C.
    process.stderr.write(`ftvm: the run is over; the dashboard stays up at ${views.dashboard.url} until Ctrl-C\n`);
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  }
  await views.close();
  return passed ? 0 : 1;
}

/**
 * `--guest dns|kv`: the pair gets a disk (a temp copy of the zone, or a zeroed kv store) and a
 * UDP forward on a free port; clients load it through the forward, the primary is killed at a
 * seeded moment under that load, and the checker looks at what the clients got (and the disk).
 */
async function ioDemo(guest: 'dns' | 'kv', seed: number, quiet: boolean, viewing: boolean): Promise<number> {
  if (viewing) throw new CliError(`--inspect and --dashboard are for the seq demo, not --guest ${guest}`);
  const say = (s: string): void => { if (!quiet) process.stdout.write(`${s}\n`); };
  say(`ftvm demo: guest ${guest}, seed ${seed}: a pair with a file disk and a UDP forward; the primary is killed under ${guest === 'dns' ? 'dns queries' : 'kv requests'}`);
  const r = guest === 'dns'
    ? await runScenario(dnsScenario, { seed, say })
    : await runScenario(kvScenario, { seed, say });
  say(`killed ${r.killDelayMs} ms after answer ${r.killAfterAnswers}; run took ${(r.durationMs / 1000).toFixed(2)} s`);
  process.stdout.write(summary(r, guest === 'dns' ? 'queries' : 'requests').join('\n') + '\n');
  return scenarioPassed(r) ? 0 : 1;
}

export const command: Command = {
  usage: USAGE,
  summary: 'run a fault-tolerant pair, kill the primary at a seeded moment, and check that no output was lost',
  run: async (argv) => {
    try {
      return await demo(argv);
    } catch (e) {
      if (e instanceof CliError || e instanceof ViewFlagError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        // Exit 1 is a failure at run time (a port in use), not a usage error.
        const code = (e as CliError).exitCode ?? 2;
        process.stderr.write(`ftvm: ${errorLine(e)}\n${code === 1 ? '' : `usage: ftvm ${USAGE}\n`}`);
        return code;
      }
      throw e;
    }
  },
};
