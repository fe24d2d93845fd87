// `--inspect`: every chart the runtime creates reports to @statelyai/inspect's WebSocket
// inspector (the XState v5 successor of @xstate/inspect). The inspector is a WebSocket
// *client*; it needs a server to talk to, so ftvm runs a small relay on 127.0.0.1 that keeps
// recent events and passes each one to every other client attached, as the package's own
// `createInspectorServer` does, but without opening a browser or loading stately.ai: nothing
// here needs the internet. Any WebSocket client (`createWebSocketReceiver`, a script, the
// Stately inspector pointed at the URL) can attach and see the actors live.
import { createWebSocketInspector } from '@statelyai/inspect';
import { WebSocket, WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import type { ActorOptions, AnyActorLogic, InspectionEvent } from 'xstate';

export type InspectObserver = NonNullable<ActorOptions<AnyActorLogic>['inspect']>;

export interface InspectRelay {
  /** `ws://127.0.0.1:PORT`: where the inspector sends and where viewers attach. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Late viewers get the last this-many events first, so they see every actor's definition. */
const KEEP = 2000;

export async function startInspectRelay(opts: { port?: number; host?: string } = {}): Promise<InspectRelay> {
  const host = opts.host ?? '127.0.0.1';
  const wss = new WebSocketServer({ host, port: opts.port ?? 0 });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const kept: string[] = [];
  // `@xstate.actor` events carry the chart definitions; keep them all, whatever else scrolls away.
  const actors: string[] = [];
  wss.on('connection', (ws) => {
    for (const m of [...actors, ...kept]) ws.send(m);
    ws.on('message', (data) => {
      const msg = data.toString();
      if (msg.includes('"type":"@xstate.actor"')) actors.push(msg);
      else {
        kept.push(msg);
        if (kept.length > KEEP) kept.shift();
      }
      for (const c of wss.clients) if (c !== ws && c.readyState === WebSocket.OPEN) c.send(msg);
    });
  });
  const port = (wss.address() as AddressInfo).port;
  return {
    url: `ws://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };
}

export interface Inspection {
  /** Pass as `createActor(logic, { inspect })` (createPair's `inspect` option does so). */
  readonly inspect: InspectObserver;
  readonly url: string;
  stop(): Promise<void>;
}

/** Start the relay and a WebSocket inspector connected to it. */
export async function startInspection(opts: { port?: number } = {}): Promise<Inspection> {
  const relay = await startInspectRelay(opts);
  const inspector = createWebSocketInspector({ url: relay.url });
  return {
    inspect: inspector.inspect,
    url: relay.url,
    async stop() {
      // Let the inspector's queued sends (it defers each by a macrotask) reach the relay.
      await new Promise((r) => setTimeout(r, 20));
      inspector.stop();
      await relay.close();
    },
  };
}

/** One inspect option that feeds several observers (the WebSocket inspector and the dashboard). */
export function fanOut(...observers: (InspectObserver | undefined)[]): InspectObserver | undefined {
  const live = observers.filter((o): o is InspectObserver => o !== undefined);
  if (live.length <= 1) return live[0];
  return (e: InspectionEvent) => {
    for (const o of live) {
      if (typeof o === 'function') o(e);
      else o.next?.(e);
    }
  };
}
