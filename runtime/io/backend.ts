// Host-side I/O backends: what the live primary's virtio devices reach through the machine's
// I/O hub. Nothing here touches guest state: results come back as inputs through the Env.

/** A shared disk in 512-byte sectors (a file, or an NBD export reached by both hosts). */
export interface DiskBackend {
  /** Capacity in 512-byte sectors. */
  readonly sectors: number;
  /** What the disk is, for messages (`file:/x.img`, `nbd://127.0.0.1:10809/disk`). */
  readonly name: string;
  /** Rejects on an I/O error; the guest then sees VIRTIO_BLK_S_IOERR. */
  read(sector: number, count: number): Promise<Uint8Array>;
  write(sector: number, data: Uint8Array): Promise<void>;
  /** Make every completed write durable (fsync, NBD_CMD_FLUSH). */
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * The host died (a replica's injected crash, pair.ts): let go as the kernel does for a killed
   * process, with nothing sent on its behalf: the lock and the descriptor or connection close,
   * nothing is flushed, a request not yet sent never is. Without it, `close` is that already.
   */
  abandon?(): Promise<void>;
}

/** A network attachment: Ethernet frames in and out of the guest's virtio-net. */
export interface NetBackend {
  /** Set by the I/O hub: a frame for the guest (it becomes a logged `net-rx` input). */
  onFrame: ((frame: Uint8Array) => void) | undefined;
  /** A frame the guest transmitted, released under the output rule. Never throws. */
  send(frame: Uint8Array): void;
  close(): Promise<void>;
}
