/*
 * A minimal virtio-mmio version 2 ("modern") driver: device probe, feature
 * negotiation, split virtqueues, PLIC interrupts, virtio-blk and virtio-net.
 * Reference: Virtual I/O Device (VIRTIO) Version 1.1, sections 2, 4.2, 5.1, 5.2.
 *
 * Everything is static and single-threaded: one request at a time on the
 * disk, fixed receive/transmit buffers on the network. Interrupt handling
 * only acknowledges the device and counts; all real work happens in the
 * main loop, which sleeps in `wfi` when there is nothing to do. Build with
 * -DVIRTIO_POLL to spin on the used rings instead (no PLIC, no wfi).
 */
#ifndef FTVM_VIRTIO_H
#define FTVM_VIRTIO_H

#include <stdint.h>

#define VIRTIO_DEV_NET 1
#define VIRTIO_DEV_BLK 2

/* Queue size used for every queue (QEMU offers up to 256; we need few). */
#define VQ_SIZE 16

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2 /* device writes this buffer */

struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};

/* One split virtqueue: the three areas the device reads and writes. */
struct virtq {
  struct virtq_desc desc[VQ_SIZE] __attribute__((aligned(16)));
  struct {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[VQ_SIZE];
    uint16_t used_event;
  } avail __attribute__((aligned(2)));
  struct {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[VQ_SIZE];
    uint16_t avail_event;
  } used __attribute__((aligned(4)));
  uint32_t base;      /* MMIO base of the owning device */
  uint16_t index;     /* queue number on that device */
  uint16_t last_used; /* next used-ring slot the driver has not consumed */
};

struct virtio_dev {
  uint32_t base; /* MMIO base, 0 when absent */
  int slot;      /* 0..7; its PLIC interrupt is 1 + slot */
};

/* Finds the first slot holding a version 2 device of `device_id`. */
int virtio_find(uint32_t device_id, struct virtio_dev *d);

/*
 * Resets the device and negotiates `features` (a 64-bit mask; VERSION_1 is
 * always added). Returns 0, or -1 if the device lacks a feature we need.
 * The caller then sets up its queues and calls virtio_driver_ok().
 */
int virtio_negotiate(struct virtio_dev *d, uint64_t features);
int virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t index);
void virtio_driver_ok(struct virtio_dev *d);

/* Makes descriptor chain `head` available and notifies the device. */
void virtq_submit(struct virtq *q, uint16_t head);
/* Pops one used element: returns its head id and sets *len, or -1. */
int virtq_pop(struct virtq *q, uint32_t *len);
int virtq_has_used(const struct virtq *q);

/*
 * Interrupts: installs the trap handler, enables the device's PLIC source
 * and the machine external interrupt. No-op with VIRTIO_POLL.
 */
void virtio_irq_enable(struct virtio_dev *d);
/* Sleeps until ready(arg) is true, without losing a wakeup. */
void virtio_wait(int (*ready)(void *), void *arg);
/* External interrupts taken so far (for curiosity; never printed by
 * deterministic guests, since the count depends on timing). */
extern volatile uint32_t virtio_irq_count;

/* ---- virtio-blk ---- */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define SECTOR_SIZE 512

struct virtio_blk {
  struct virtio_dev dev;
  struct virtq q;
  uint64_t capacity; /* in 512-byte sectors */
};

int blk_init(struct virtio_blk *b);
/* Each returns a VIRTIO_BLK_S_* status (or -1 on a driver error). */
int blk_read(struct virtio_blk *b, uint64_t sector, void *buf, uint32_t count);
int blk_write(struct virtio_blk *b, uint64_t sector, const void *buf, uint32_t count);
int blk_flush(struct virtio_blk *b);
int blk_get_id(struct virtio_blk *b, char id[VIRTIO_BLK_ID_BYTES + 1]);
/* Any request type: header, then `len` bytes of data (written by the
 * device if device_writes), then the status byte. */
int blk_request(struct virtio_blk *b, uint32_t type, uint64_t sector, void *data, uint32_t len,
                int device_writes);

/* ---- virtio-net ---- */
#define NET_RX_BUFS VQ_SIZE
#define NET_TX_BUFS 8
#define NET_HDR_LEN 12    /* virtio_net_hdr with num_buffers (VERSION_1) */
#define NET_BUF_LEN 1536  /* >= 12 + 1514: no mergeable buffers, no GSO */
#define ETH_MAX_FRAME 1514

struct virtio_net {
  struct virtio_dev dev;
  struct virtq rx, tx;
  uint8_t mac[6];
  uint16_t tx_busy; /* bit i set while TX buffer i is with the device */
};

int net_init(struct virtio_net *n);
/*
 * Returns the next received Ethernet frame (without the virtio header) and
 * its length, or NULL. Hand the buffer back with net_rx_release(id).
 */
uint8_t *net_rx(struct virtio_net *n, uint32_t *len, int *id);
void net_rx_release(struct virtio_net *n, int id);
int net_rx_ready(void *n); /* for virtio_wait */
/* Returns a free transmit frame buffer (room for ETH_MAX_FRAME bytes). */
uint8_t *net_tx_buf(struct virtio_net *n, int *id);
void net_tx_send(struct virtio_net *n, int id, uint32_t len);

#endif
