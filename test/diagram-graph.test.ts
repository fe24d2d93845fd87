// The graph, mermaid and SVG are read from the definition: check them against charts whose
// shape is known, including one written here so the test does not follow a colleague's edits.
import { describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { activeStateIds, chartGraph, drawChart, layoutChart, toMermaid } from '../runtime/diagram/index.js';
import { primaryMachine } from '../machines/primary.machine.js';

const toy = setup({
  types: { context: {} as { n: number }, events: {} as { type: 'go' } | { type: 'tick' } | { type: 'stop' } },
  actions: { beep: () => {} },
  guards: { isReady: () => true },
}).createMachine({
  id: 'toy',
  initial: 'idle',
  context: { n: 0 },
  on: { stop: { target: '.done' } },
  states: {
    idle: { on: { go: { guard: 'isReady', target: 'busy' } } },
    busy: {
      initial: 'a',
      entry: 'beep',
      on: { tick: { actions: assign({ n: ({ context }) => context.n + 1 }) } },
      states: { a: { on: { go: 'b' } }, b: {} },
    },
    done: { type: 'final' },
  },
});

describe('chartGraph', () => {
  it('lists states, transitions, guards and internal transitions of the definition', () => {
    const g = chartGraph(toy);
    expect(g.id).toBe('toy');
    expect(g.states.map((s) => s.id)).toEqual(['', 'idle', 'busy', 'busy.a', 'busy.b', 'done']);
    expect(g.states.find((s) => s.id === 'busy')).toMatchObject({ type: 'compound', initial: 'busy.a', entry: ['beep'], internal: ['tick / assign'] });
    expect(g.transitions).toEqual([
      { source: '', target: 'done', event: 'stop', guard: undefined, actions: [] },
      { source: 'idle', target: 'busy', event: 'go', guard: 'isReady', actions: [] },
      { source: 'busy.a', target: 'busy.b', event: 'go', guard: undefined, actions: [] },
    ]);
  });

  it('names the active states of nested snapshot values', () => {
    expect(activeStateIds('alone')).toEqual(['alone']);
    expect(activeStateIds({ protected: 'flowing' })).toEqual(['protected', 'protected.flowing']);
  });

  it('reads the primary chart: every target in its config appears as an edge', () => {
    const g = chartGraph(primaryMachine);
    const pairs = g.transitions.map((t) => `${t.source}->${t.target}:${t.event}`);
    expect(pairs).toContain('claiming->alone:xstate.done.actor.arbiter');
    expect(pairs).toContain('protected.flowing->protected.throttled:channel.highWater');
    expect(pairs).toContain('->finished:vm.halted');
  });
});

describe('mermaid', () => {
  it('writes stateDiagram-v2 with composite states, finals and root-level transitions', () => {
    const m = toMermaid(chartGraph(toy));
    expect(m.split('\n')).toEqual(expect.arrayContaining([
      'stateDiagram-v2',
      '  [*] --> idle',
      '  state "idle" as idle',
      '  state busy {',
      '    [*] --> busy__a',
      '    state "a" as busy__a',
      '  note right of busy',
      '    entry / beep',
      '    tick / assign',
      '  end note',
      '  done --> [*]',
      '  any --> done : stop',
      '  idle --> busy : go [isReady]',
      '  busy__a --> busy__b : go',
    ]));
  });
});

describe('layout and svg', () => {
  it('places every state inside its parent and draws each transition', async () => {
    const l = await layoutChart(chartGraph(toy));
    const box = (id: string) => l.boxes.find((b) => b.id === id)!;
    for (const child of ['busy.a', 'busy.b']) {
      const c = box(child);
      const p = box('busy');
      expect(c.x).toBeGreaterThanOrEqual(p.x);
      expect(c.y).toBeGreaterThanOrEqual(p.y);
      expect(c.x + c.width).toBeLessThanOrEqual(p.x + p.width);
      expect(c.y + c.height).toBeLessThanOrEqual(p.y + p.height);
    }
    // 3 transitions + 2 initial arrows (root and busy), each with at least a start and end point.
    expect(l.edges).toHaveLength(5);
    for (const e of l.edges) expect(e.points.length).toBeGreaterThanOrEqual(2);
  });

  it('marks every state with data-state so the dashboard can light it', async () => {
    const { svg } = await drawChart(toy);
    for (const id of ['idle', 'busy', 'busy.a', 'busy.b', 'done']) expect(svg).toContain(`data-state="${id}"`);
    expect(svg).toContain('>go [isReady]<');
  });
});
