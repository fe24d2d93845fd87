// Mermaid `stateDiagram-v2` text for a chart, generated from its definition (graph.ts).
import type { ChartGraph, ChartState } from './graph.js';
import { stateLines, transitionLabel } from './layout.js';

/** Mermaid ids may not contain dots; a state's path is joined with `__` instead. */
const mid = (id: string): string => id.replace(/\./g, '__');
/** Mermaid ends a label at `:` and chokes on some punctuation; keep labels to plain text. */
const text = (s: string): string => s.replace(/[:;#]/g, ' ').replace(/\s+/g, ' ').trim();

export function toMermaid(graph: ChartGraph): string {
  const out: string[] = ['stateDiagram-v2'];
  const root = graph.states.find((s) => s.parent === undefined)!;
  const children = (p: string): ChartState[] => graph.states.filter((s) => s.parent === p);

  const emit = (parent: ChartState, indent: string): void => {
    if (parent.initial) out.push(`${indent}[*] --> ${mid(parent.initial)}`);
    for (const s of children(parent.id)) {
      const kids = children(s.id);
      const lines = stateLines(s).map(text);
      if (kids.length > 0) {
        out.push(`${indent}state ${mid(s.id)} {`);
        emit(s, indent + '  ');
        out.push(`${indent}}`);
        // NOTE: a description on a composite state replaces its title in mermaid; use a note.
        if (lines.length > 0) out.push(`${indent}note right of ${mid(s.id)}`, ...lines.map((l) => `${indent}  ${l}`), `${indent}end note`);
      } else {
        // Declared with its key first: otherwise mermaid shows the first description as the name.
        out.push(`${indent}state "${text(s.key)}" as ${mid(s.id)}`);
        for (const l of lines) out.push(`${indent}${mid(s.id)} : ${l}`);
      }
      if (s.type === 'final') out.push(`${indent}${mid(s.id)} --> [*]`);
    }
  };
  emit(root, '  ');
  if (graph.transitions.some((t) => t.source === root.id) || stateLines(root).length > 0) out.push('  state "any state" as any');
  for (const l of stateLines(root)) out.push(`  note right of any : ${text(l)}`);
  for (const t of graph.transitions) {
    const source = t.source === root.id ? 'any' : mid(t.source);
    out.push(`  ${source} --> ${mid(t.target)} : ${text(transitionLabel(t))}`);
  }
  return out.join('\n') + '\n';
}
