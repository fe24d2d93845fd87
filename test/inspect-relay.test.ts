// `--inspect`: the pair's charts report through @statelyai/inspect's WebSocket inspector to
// the local relay, and any WebSocket client attached to the relay sees them, definitions and
// state changes, without the internet.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createPair } from '../runtime/pair.js';
import { guestPath } from '../runtime/guests.js';
import { fanOut, startInspectRelay, startInspection, type Inspection } from '../runtime/inspect/index.js';

interface Msg { type: string; sessionId: string; name?: string; definition?: string; snapshot?: { value?: unknown } }

const attach = (url: string): Promise<{ ws: WebSocket; got: Msg[] }> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const got: Msg[] = [];
    ws.on('message', (d) => got.push(JSON.parse(d.toString()) as Msg));
    ws.once('open', () => resolve({ ws, got }));
    ws.once('error', reject);
  });

const until = async (cond: () => boolean, ms: number): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('inspection relay', () => {
  let inspection: Inspection | undefined;
  afterEach(async () => {
    await inspection?.stop();
    inspection = undefined;
  });

  it('binds to loopback and passes each message to every other client', async () => {
    const relay = await startInspectRelay();
    try {
      expect(relay.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
      const a = await attach(relay.url);
      const b = await attach(relay.url);
      a.ws.send(JSON.stringify({ type: '@xstate.event', sessionId: 'x:9' }));
      await until(() => b.got.length === 1, 2000);
      expect(b.got[0]).toEqual({ type: '@xstate.event', sessionId: 'x:9' });
      // The sender does not get its own message back.
      expect(a.got).toEqual([]);
      // A viewer that attaches late still gets what was sent before.
      const c = await attach(relay.url);
      await until(() => c.got.length === 1, 2000);
      for (const x of [a, b, c]) x.ws.close();
    } finally {
      await relay.close();
    }
  });

  it("a viewer sees the pair's, primary's and backup's charts with their definitions and states", async () => {
    inspection = await startInspection();
    const viewer = await attach(inspection.url);
    const pair = createPair({ image: readFileSync(guestPath('seq-short')), inspect: inspection.inspect });
    const outcome = await pair.start();
    expect(outcome.code).toBe(0);
    const actors = (): Msg[] => viewer.got.filter((m) => m.type === '@xstate.actor');
    await until(() => actors().length >= 3 && viewer.got.some((m) => m.type === '@xstate.snapshot' && JSON.stringify(m.snapshot?.value) === '"finished"'), 5000);
    const names = actors().map((m) => m.name).sort();
    // The pair chart (actor id 'pair') runs beside the nodes' charts; a node's inner actors
    // (its CPU chart, its device charts) are named after it: `primary.cpu`, `backup.plic-10`.
    expect(names).toEqual(expect.arrayContaining(['backup', 'pair', 'primary']));
    for (const n of names.filter((x) => !['backup', 'pair', 'primary'].includes(x!))) expect(n).toMatch(/^(primary|backup)\.[a-z0-9-]+$/);
    // The definition travels with the actor, so a viewer can draw the chart.
    const primaryDef = JSON.parse(actors().find((m) => m.name === 'primary')!.definition!) as { states: Record<string, unknown> };
    expect(Object.keys(primaryDef.states)).toEqual(expect.arrayContaining(['starting', 'protected', 'claiming', 'alone']));
    const primarySession = actors().find((m) => m.name === 'primary')!.sessionId;
    const values = viewer.got.filter((m) => m.type === '@xstate.snapshot' && m.sessionId === primarySession).map((m) => JSON.stringify(m.snapshot?.value));
    expect(values).toContain('{"protected":"flowing"}');
    const pairSession = actors().find((m) => m.name === 'pair')!.sessionId;
    const pairValues = viewer.got.filter((m) => m.type === '@xstate.snapshot' && m.sessionId === pairSession).map((m) => JSON.stringify(m.snapshot?.value));
    expect(pairValues).toEqual(expect.arrayContaining(['"starting"', '"protected"', '"finished"']));
    viewer.ws.close();
  });

  it('fanOut feeds every observer, functions and observer objects alike', () => {
    const seen: string[] = [];
    const both = fanOut((e) => seen.push(`f:${e.type}`), { next: (e) => seen.push(`o:${e.type}`) }, undefined)!;
    const e = { type: '@xstate.event' } as Parameters<Extract<typeof both, (...a: never[]) => unknown>>[0];
    if (typeof both === 'function') both(e);
    else both.next?.(e);
    expect(seen).toEqual(['f:@xstate.event', 'o:@xstate.event']);
    const one = (): void => {};
    expect(fanOut(undefined, one)).toBe(one);
  });
});
