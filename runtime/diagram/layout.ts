// Lays a chart out with ELK's layered (Sugiyama) algorithm. elkjs is the Eclipse Layout
// Kernel compiled to JavaScript: pure JS, no network, no native code, and it handles what a
// hand-written layering would not, compound states with edges that cross their borders.
// Its layout is deterministic for a given input, so committed SVGs diff cleanly.
import ELKModule from 'elkjs/lib/elk.bundled.js';
import type { ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api.js';
import type { ChartGraph, ChartState } from './graph.js';

/** Monospace text at 12px: width per character, so boxes fit labels without a browser. */
export const CHAR_W = 7.3;
export const LINE_H = 15;
const PAD = 10;

export interface BoxLayout {
  /** A state id, or a pseudo-state: `init:<parent>` (initial arrow) or `any` (root-level transitions). */
  id: string;
  state: ChartState | undefined;
  x: number;
  y: number;
  width: number;
  height: number;
  /** Text lines under the name: entry/exit actions and internal transitions. */
  lines: string[];
}

export interface EdgeLayout {
  id: string;
  source: string;
  target: string;
  label: string;
  points: { x: number; y: number }[];
  labelAt: { x: number; y: number; width: number; height: number } | undefined;
}

export interface ChartLayout {
  graph: ChartGraph;
  width: number;
  height: number;
  boxes: BoxLayout[];
  edges: EdgeLayout[];
}

// elkjs ships CommonJS; under NodeNext its default export is the constructor.
const ELK = ELKModule as unknown as new () => { layout(g: ElkNode, o?: unknown): Promise<ElkNode> };

export function stateLines(s: ChartState): string[] {
  return [
    ...s.entry.map((a) => `entry / ${a}`),
    ...s.exit.map((a) => `exit / ${a}`),
    ...s.invoke.map((a) => `invoke ${a}`),
    ...s.internal,
  ];
}

export function transitionLabel(t: { event: string; guard: string | undefined }): string {
  return t.guard ? `${t.event} [${t.guard}]` : t.event;
}

const textWidth = (lines: string[]): number => Math.max(0, ...lines.map((l) => l.length)) * CHAR_W;

export async function layoutChart(graph: ChartGraph): Promise<ChartLayout> {
  const byId = new Map(graph.states.map((s) => [s.id, s]));
  const root = graph.states.find((s) => s.parent === undefined)!;
  const elkNodes = new Map<string, ElkNode>();
  const lines = new Map<string, string[]>();

  const makeNode = (s: ChartState): ElkNode => {
    const ls = stateLines(s);
    lines.set(s.id, ls);
    const children = graph.states.filter((c) => c.parent === s.id);
    const headerH = 26 + ls.length * LINE_H;
    const node: ElkNode = { id: s.id, width: Math.max(90, textWidth([s.key, ...ls]) + 2 * PAD), height: headerH + 6 };
    if (children.length > 0) {
      node.children = [];
      if (s.initial) node.children.push({ id: `init:${s.id}`, width: 12, height: 12 });
      node.children.push(...children.map(makeNode));
      node.layoutOptions = { 'elk.padding': `[top=${headerH + 8},left=14,bottom=14,right=14]` };
    }
    elkNodes.set(node.id, node);
    return node;
  };

  const top: ElkNode[] = [];
  if (root.initial) top.push({ id: `init:${root.id}`, width: 12, height: 12 });
  for (const s of graph.states.filter((c) => c.parent === root.id)) top.push(makeNode(s));
  const hasRootTransitions = graph.transitions.some((t) => t.source === root.id);
  if (hasRootTransitions) top.push({ id: 'any', width: textWidth(['any state']) + 2 * PAD, height: 26 });

  const edges: ElkExtendedEdge[] = [];
  const label = (text: string) => ({ text, width: text.length * CHAR_W + 4, height: LINE_H });
  for (const s of graph.states) {
    if (s.initial) edges.push({ id: `e:init:${s.id}`, sources: [`init:${s.id}`], targets: [s.initial] });
  }
  graph.transitions.forEach((t, i) => {
    const source = t.source === root.id ? 'any' : t.source;
    edges.push({ id: `e${i}`, sources: [source], targets: [t.target], labels: [label(transitionLabel(t))] });
  });

  const elk = new ELK();
  const laid = await elk.layout(
    { id: 'root', children: top, edges },
    {
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'DOWN',
        'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
        'elk.edgeRouting': 'ORTHOGONAL',
        // NOTE: the model-order options crash elkjs 0.12 with INCLUDE_CHILDREN; leave them off.
        'elk.layered.spacing.nodeNodeBetweenLayers': '36',
        'elk.spacing.nodeNode': '28',
        'elk.spacing.edgeLabel': '4',
        'elk.edgeLabels.inline': 'false',
        'elk.padding': '[top=12,left=12,bottom=12,right=12]',
        'elk.json.shapeCoords': 'ROOT',
        'elk.json.edgeCoords': 'ROOT',
      },
    },
  );

  const boxes: BoxLayout[] = [];
  const walk = (n: ElkNode): void => {
    for (const c of n.children ?? []) {
      boxes.push({ id: c.id, state: byId.get(c.id), x: c.x ?? 0, y: c.y ?? 0, width: c.width ?? 0, height: c.height ?? 0, lines: lines.get(c.id) ?? [] });
      walk(c);
    }
  };
  walk(laid);

  const out: EdgeLayout[] = [];
  for (const e of (laid.edges ?? []) as ElkExtendedEdge[]) {
    const sec = e.sections?.[0];
    if (!sec) continue;
    const points = [sec.startPoint, ...(sec.bendPoints ?? []), sec.endPoint].map((p) => ({ x: p.x, y: p.y }));
    const l = e.labels?.[0];
    out.push({
      id: e.id,
      source: e.sources[0]!,
      target: e.targets[0]!,
      label: l?.text ?? '',
      points,
      labelAt: l ? { x: l.x ?? 0, y: l.y ?? 0, width: l.width ?? 0, height: l.height ?? 0 } : undefined,
    });
  }
  return { graph, width: laid.width ?? 0, height: laid.height ?? 0, boxes, edges: out };
}
