export type { BackupEnd, ChannelEvent, ChannelStats, FlowControlOptions, Lag, PrimaryEnd } from './channel.js';
export { createInProcessChannel, type InProcessChannel, type InProcessChannelOptions } from './in-process.js';
export { SendWindow } from './send-window.js';
export { watchdog$, type PeerStatus } from './watchdog.js';
export { BackupCore, PrimaryCore, type BackupTransport, type ChannelSnapshot, type ChartOptions, type PrimaryTransport } from './core.js';
