import type { AnyStateMachine } from 'xstate';
import { chartGraph, type ChartGraph } from './graph.js';
import { layoutChart } from './layout.js';
import { renderSvg } from './svg.js';
import { toMermaid } from './mermaid.js';

export { chartGraph, activeStateIds, type ChartGraph, type ChartState, type ChartTransition } from './graph.js';
export { layoutChart } from './layout.js';
export { renderSvg } from './svg.js';
export { toMermaid } from './mermaid.js';
export { loadMachines } from './machines.js';

export interface ChartDrawing {
  /** The chart's name (its `allMachines` key); `graph.id` is the machine's own id. */
  id: string;
  graph: ChartGraph;
  mermaid: string;
  svg: string;
}

/** Everything one chart is drawn as, from its definition alone. */
export async function drawChart(machine: AnyStateMachine, name = machine.id): Promise<ChartDrawing> {
  const graph = chartGraph(machine);
  return { id: name, graph, mermaid: toMermaid(graph), svg: renderSvg(await layoutChart(graph)) };
}
