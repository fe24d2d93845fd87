// The fault checker (DESIGN §6): from the client's history (every output any replica
// released, with its index, node and generation) and the arbiter's records, decide whether a
// run kept the promises of DESIGN §3:
// - no loss: every output index up to the guest's power-off arrived at least once;
// - one execution: an index released twice carries the same output both times, and the
//   deduplicated stream is one the seq guest prints (numbered lines, right checksums);
// - no split brain: each generation's outputs come from one node, and from generation 2 on
//   that node is the arbiter's holder of the previous generation's key;
// - no outage where a synced replica survived: a run that ends without the guest's power-off
//   is excused only when every replica the harness did not stop halted because it had lost
//   the arbiter to one the harness then stopped (a double failure).

import type { ReleasedOutput } from '../ft/output-gate.js';
import { SeqChecker } from '../demo/seq-checker.js';
import type { Output } from '../types.js';

export interface CheckResult {
  ok: boolean;
  /** Output indices below the highest seen that never arrived. */
  lost: number;
  /** The run did not reach the guest's power-off in any replica's output. */
  incomplete: boolean;
  duplicates: number;
  /** Same index, different output: two executions. */
  conflicts: number;
  /** Generations whose outputs came from more than one node. */
  doubleLive: number;
  /** The guest did not finish although a synced replica survived (set by judgeOutage's caller). */
  outage: boolean;
  /** Outputs released by backups the primary refused (set by the harness; must be 0). */
  refusedOutputs: number;
  lines: number;
  errors: string[];
}

const same = (a: Output, b: Output): boolean => {
  if (a.kind !== b.kind || a.icount !== b.icount) return false;
  switch (a.kind) {
    case 'console': return a.byte === (b as typeof a).byte;
    case 'power': return a.code === (b as typeof a).code;
    case 'net': return Buffer.from(a.frame).equals(Buffer.from((b as typeof a).frame));
    default: return a.sector === (b as typeof a).sector && Buffer.from(a.data).equals(Buffer.from((b as typeof a).data));
  }
};

/**
 * The outputs of a service guest (dns, kv), which runs until it is stopped: the same promises
 * as `checkHistory` without the seq guest's lines: one execution (an index released twice is
 * the same output), no split brain, and no loss (every index below the highest arrived). What
 * the clients saw is the service's own checker's (checkDns, checkKv).
 */
export function checkOutputs(history: readonly ReleasedOutput[], claims: ReadonlyMap<number, string>): CheckResult {
  const r = checkHistory(history, claims, false);
  let top = -1;
  const seen = new Set<number>();
  for (const o of history) {
    seen.add(o.index);
    if (o.index > top) top = o.index;
  }
  let lost = 0;
  for (let i = 0; i <= top; i++) if (!seen.has(i)) lost++;
  if (lost > 0) r.errors.push(`${lost} of the outputs 0..${top} never left any replica`);
  r.lost = lost;
  r.lines = seen.size;
  r.ok = r.errors.length === 0;
  return r;
}

export function checkHistory(history: readonly ReleasedOutput[], claims: ReadonlyMap<number, string>, seqGuest = true): CheckResult {
  const errors: string[] = [];
  const byIndex = new Map<number, ReleasedOutput>();
  let duplicates = 0;
  let conflicts = 0;
  for (const o of history) {
    const seen = byIndex.get(o.index);
    if (!seen) {
      byIndex.set(o.index, o);
      continue;
    }
    duplicates++;
    if (!same(seen.output, o.output)) {
      conflicts++;
      if (conflicts <= 5) errors.push(`output ${o.index}: ${seen.node} released ${JSON.stringify(seen.output)}, ${o.node} released ${JSON.stringify(o.output)}`);
    }
  }

  const nodesByGeneration = new Map<number, Set<string>>();
  for (const o of history) {
    const set = nodesByGeneration.get(o.generation) ?? new Set<string>();
    set.add(o.node);
    nodesByGeneration.set(o.generation, set);
  }
  let doubleLive = 0;
  for (const [g, nodes] of nodesByGeneration) {
    if (nodes.size > 1) {
      doubleLive++;
      errors.push(`generation ${g}: outputs from ${[...nodes].join(' and ')}`);
    }
    if (g >= 2) {
      const holder = claims.get(g - 1);
      for (const n of nodes) if (n !== holder) errors.push(`generation ${g}: ${n} released outputs without holding key ${g - 1} (holder: ${holder ?? 'none'})`);
    }
  }

  if (!seqGuest) {
    return { ok: errors.length === 0, lost: 0, incomplete: false, duplicates, conflicts, doubleLive, outage: false, refusedOutputs: 0, lines: byIndex.size, errors };
  }
  const seq = new SeqChecker();
  for (const i of [...byIndex.keys()].sort((a, b) => a - b)) seq.accept(byIndex.get(i)!);
  errors.push(...seq.errors);
  const incomplete = seq.exitCode === undefined;
  if (incomplete) errors.push(`no power-off among ${byIndex.size} outputs: the run did not finish`);
  else if (!seq.ok) errors.push(`seq checker: done ${seq.done}, lines ${seq.lines}, exit ${seq.exitCode}`);
  return {
    ok: errors.length === 0 && seq.ok,
    lost: seq.lost,
    incomplete,
    duplicates,
    conflicts,
    doubleLive,
    outage: false,
    refusedOutputs: 0,
    lines: seq.lines,
    errors,
  };
}

/** What became of one accepted replica of a run. */
export interface ReplicaFate {
  node: string;
  /** The harness stopped it (kill -9 or SIGTERM). */
  killed: boolean;
  /** Exit code or signal name. */
  exit: string;
}

/** Exit code of a replica that lost the arbiter and halted (runtime/commands/primary.ts). */
const EXIT_HALTED = '3';

/**
 * No outage where a synced replica survived. Both replicas of a run are accepted and synced
 * (the backup attached before any fault, holding the log from instruction 0). If the guest
 * did not finish, every replica the harness did not stop must have halted because it lost
 * the arbiter to a replica the harness then stopped: a double failure, which may end the
 * service (but still lose nothing). Anything else is an outage. When the outage is excused,
 * the checker's "did not finish" error is withdrawn from `check`.
 */
export function judgeOutage(check: CheckResult, fates: readonly ReplicaFate[], claims: ReadonlyMap<number, string>): { excused: boolean; error: string | undefined } {
  if (!check.incomplete) return { excused: false, error: undefined };
  const killed = new Set(fates.filter((f) => f.killed).map((f) => f.node));
  const heldByKilled = [...claims.values()].some((holder) => killed.has(holder));
  const survivors = fates.filter((f) => !f.killed && !(f.exit === EXIT_HALTED && heldByKilled));
  if (survivors.length === 0) {
    check.errors = check.errors.filter((e) => !/did not finish/.test(e));
    check.ok = check.errors.length === 0;
    return { excused: true, error: undefined };
  }
  return {
    excused: false,
    error: `outage: the guest did not finish although ${survivors.map((f) => `${f.node} (exit ${f.exit})`).join(' and ')} was never stopped`,
  };
}
