// A chart's states and transitions as plain JSON, read from the machine definition itself
// (`machine.root`), never written by hand: the diagrams, the dashboard and their tests all
// start here, so a chart that changes changes its pictures.
import type { AnyStateMachine, AnyStateNode } from 'xstate';

export interface ChartState {
  /** Unique within the chart: the state node's path joined by dots ('' for the root). */
  id: string;
  key: string;
  /** The parent state's id, or undefined for the root. */
  parent: string | undefined;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** For a compound state, the id of its initial child. */
  initial: string | undefined;
  entry: string[];
  exit: string[];
  /** Transitions that change no state (`event / actions`), drawn inside the state's box. */
  internal: string[];
  /** Actors invoked while in this state (their `src`), if any. */
  invoke: string[];
}

export interface ChartTransition {
  source: string;
  target: string;
  /** The event type, or `always` / `after <delay>` for eventless transitions. */
  event: string;
  guard: string | undefined;
  actions: string[];
}

export interface ChartGraph {
  /** The machine's id (`createMachine({ id })`). */
  id: string;
  states: ChartState[];
  transitions: ChartTransition[];
}

const stateId = (n: AnyStateNode): string => n.path.join('.');

function actionName(a: unknown): string {
  if (typeof a === 'string') return a;
  if (a && typeof a === 'object' && 'type' in a && typeof (a as { type: unknown }).type === 'string') return (a as { type: string }).type;
  if (typeof a === 'function') {
    // `assign(...)` and other built-ins carry their kind; an inline function has only its name.
    const t = (a as { type?: unknown }).type;
    if (typeof t === 'string') return t.replace(/^xstate\./, '');
    return a.name || 'anonymous';
  }
  return 'anonymous';
}

function guardName(g: unknown): string | undefined {
  if (g === undefined) return undefined;
  if (typeof g === 'string') return g;
  if (g && typeof g === 'object' && 'type' in g) return String((g as { type: unknown }).type);
  if (typeof g === 'function') return g.name || 'guard';
  return 'guard';
}

/** Walk the chart's state nodes in document order. */
export function chartGraph(machine: AnyStateMachine): ChartGraph {
  const states: ChartState[] = [];
  const transitions: ChartTransition[] = [];
  const visit = (node: AnyStateNode): void => {
    const id = stateId(node);
    const internal: string[] = [];
    const addTransitions = (event: string, defs: readonly { target?: readonly AnyStateNode[] | undefined; guard?: unknown; actions: readonly unknown[] }[]): void => {
      for (const t of defs) {
        const actions = t.actions.map(actionName);
        const guard = guardName(t.guard);
        const targets = t.target ?? [];
        if (targets.length === 0) {
          internal.push(`${event}${guard ? ` [${guard}]` : ''}${actions.length ? ` / ${actions.join(', ')}` : ''}`);
          continue;
        }
        for (const target of targets) transitions.push({ source: id, target: stateId(target), event, guard, actions });
      }
    };
    for (const [event, defs] of node.transitions) {
      // Delayed transitions appear in `transitions` under an internal event name too; they are
      // listed from `after` below with a readable label instead.
      if (event.startsWith('xstate.after')) continue;
      addTransitions(event, defs);
    }
    for (const t of node.after) addTransitions(`after ${String(t.delay)}`, [t]);
    if (node.always) addTransitions('always', node.always);
    const initial = node.type === 'compound' ? node.initial.target[0] : undefined;
    states.push({
      id,
      key: node.key,
      parent: node.parent ? stateId(node.parent) : undefined,
      type: node.type,
      initial: initial ? stateId(initial) : undefined,
      entry: node.entry.map(actionName),
      exit: node.exit.map(actionName),
      internal,
      invoke: node.invoke.map((i) => (typeof i.src === 'string' ? i.src : i.id)),
    });
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child);
  };
  visit(machine.root);
  return { id: machine.id, states, transitions };
}

/**
 * The ids of the states a snapshot value names, outermost first: `{protected: 'flowing'}`
 * gives `['protected', 'protected.flowing']`. The root ('') is always active.
 */
export function activeStateIds(value: unknown, prefix: string[] = []): string[] {
  if (typeof value === 'string') return [[...prefix, value].join('.')];
  if (value && typeof value === 'object') {
    const ids: string[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      ids.push([...prefix, k].join('.'));
      ids.push(...activeStateIds(v, [...prefix, k]));
    }
    return ids;
  }
  return [];
}
