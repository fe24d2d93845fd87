// `--inspect [PORT]` and `--dashboard [PORT]` for the commands that run charts (demo, run,
// and later pair/primary/backup). Both take an optional port, which node:util's parseArgs
// cannot express, so they are taken out of argv before the command parses the rest; so is
// `--pace PERCENT`, which slows the run down for a person watching the dashboard (pace.ts).
import { createServer } from 'node:net';
import type { Pair } from '../pair.js';
import { CliError } from '../commands/common.js';
import { fanOut, startInspection, type InspectObserver, type Inspection } from '../inspect/index.js';
import { startDashboard, type Dashboard } from './server.js';
import { startPacer, type Pacer } from './pace.js';

export interface ViewFlags {
  /** The port for the inspection relay (0: any free one), or undefined without --inspect. */
  inspect: number | undefined;
  dashboard: number | undefined;
  /** `--pace PERCENT`: run this thread at PERCENT (1-100) of host speed; undefined: full speed. */
  pace?: number | undefined;
}

export class ViewFlagError extends Error {
  override readonly name = 'ViewFlagError';
}

const DEFAULT_DASHBOARD_PORT = 8080;

/** Remove `--inspect [PORT]` / `--dashboard [PORT]` (also `--dashboard=PORT`) and `--pace PERCENT` from argv. */
export function takeViewFlags(argv: readonly string[]): { rest: string[]; flags: ViewFlags } {
  const rest: string[] = [];
  const flags: ViewFlags = { inspect: undefined, dashboard: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const p = /^--pace(?:=(.*))?$/.exec(a);
    if (p) {
      const text = p[1] ?? argv[++i];
      const percent = Number(text);
      if (text === undefined || !/^\d+$/.test(text) || percent < 1 || percent > 100) throw new ViewFlagError(`--pace wants a percentage of host speed from 1 to 100, got '${text ?? ''}'`);
      flags.pace = percent;
      continue;
    }
    const m = /^--(inspect|dashboard)(?:=(.*))?$/.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    const name = m[1] as 'inspect' | 'dashboard';
    let text = m[2];
    if (text === undefined && argv[i + 1] !== undefined && /^\d+$/.test(argv[i + 1]!)) text = argv[++i];
    const port = text === undefined ? (name === 'dashboard' ? DEFAULT_DASHBOARD_PORT : 0) : Number(text);
    if (!/^\d+$/.test(text ?? '0') || !Number.isInteger(port) || port > 65535) throw new ViewFlagError(`--${name} wants a port number, got '${text}'`);
    flags[name] = port;
  }
  return { rest, flags };
}

export interface Views {
  /** For createPair({ inspect }); undefined when neither flag was given. */
  readonly inspect: InspectObserver | undefined;
  readonly inspection: Inspection | undefined;
  readonly dashboard: Dashboard | undefined;
  attach(pair: Pair, info?: { guest?: string }): void;
  close(): Promise<void>;
}

/** A port the flag names that cannot be listened on, as one line for the operator (exit 1). */
function listenError(flag: string, port: number, e: unknown): CliError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new CliError(`${flag}: port ${port} is in use`, 1);
  if (code === 'EACCES') return new CliError(`${flag}: port ${port} needs privileges`, 1);
  return new CliError(`${flag}: cannot listen on port ${port}: ${(e as Error).message}`, 1);
}

/**
 * Fail early, in one line, when `port` on 127.0.0.1 (where the relay and the dashboard
 * listen) is taken: for a command that hands the port to child processes.
 */
export async function checkPortFree(flag: string, port: number): Promise<void> {
  if (port === 0) return;
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError(flag, port, e)));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
  });
}

/** Start what the flags ask for, and tell the user (on stderr) where to look. */
export async function startViews(flags: ViewFlags, say: (s: string) => void = (s) => process.stderr.write(s)): Promise<Views> {
  const inspection = flags.inspect === undefined ? undefined
    : await startInspection({ port: flags.inspect }).catch((e: unknown) => { throw listenError('--inspect', flags.inspect!, e); });
  const dashboard = flags.dashboard === undefined ? undefined
    : await startDashboard({ port: flags.dashboard }).catch(async (e: unknown) => {
      await inspection?.stop();
      throw listenError('--dashboard', flags.dashboard!, e);
    });
  if (inspection) say(`ftvm: inspecting every chart at ${inspection.url} (@statelyai/inspect WebSocket events; attach any WebSocket client)\n`);
  if (dashboard) say(`ftvm: dashboard at ${dashboard.url}\n`);
  // A person needs time to press "Kill primary", then "Add backup", then "Kill primary" again.
  const pacer: Pacer | undefined = flags.pace === undefined || flags.pace === 100 ? undefined : startPacer(flags.pace / 100);
  if (pacer) say(`ftvm: pacing this thread (pair and dashboard) at ${flags.pace}% of host speed\n`);
  return {
    inspect: fanOut(inspection?.inspect, dashboard?.inspect),
    inspection,
    dashboard,
    attach: (pair, info) => dashboard?.attach(pair, info),
    async close() {
      pacer?.stop();
      await inspection?.stop();
      await dashboard?.close();
    },
  };
}
