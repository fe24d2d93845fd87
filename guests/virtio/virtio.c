/*
 * virtio-mmio version 2 transport, split virtqueues, virtio-blk and
 * virtio-net (see virtio.h). Register offsets: VIRTIO 1.1, 4.2.2.
 */
#include "virtio.h"

#include <string.h>

#include "platform.h"

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG 0x100

#define VIRTIO_MAGIC 0x74726976u /* "virt" */
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_FAILED 128

#define VIRTIO_F_VERSION_1 (1ull << 32)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)
#define VIRTIO_NET_F_MAC (1ull << 5)

#define PLIC_PRIORITY(irq) (PLIC_BASE + 4u * (irq))
#define PLIC_ENABLE_CTX0 (PLIC_BASE + 0x2000u) /* hart 0, M-mode */
#define PLIC_THRESHOLD_CTX0 (PLIC_BASE + 0x200000u)
#define PLIC_CLAIM_CTX0 (PLIC_BASE + 0x200004u)

#define REG(d, off) MMIO32((d)->base + (off))

/* Orders our ring writes before the device sees them, and its after. */
static inline void mb(void) { __asm__ volatile("fence rw, rw" ::: "memory"); }

int virtio_find(uint32_t device_id, struct virtio_dev *d) {
  /* QEMU fills slots from the highest down, so look at all of them. */
  for (int n = 0; n < VIRTIO_MMIO_SLOTS; n++) {
    uint32_t base = VIRTIO_MMIO_BASE(n);
    if (MMIO32(base + REG_MAGIC) != VIRTIO_MAGIC) continue;
    if (MMIO32(base + REG_VERSION) != 2) continue; /* legacy: not ours */
    if (MMIO32(base + REG_DEVICE_ID) != device_id) continue;
    d->base = base;
    d->slot = n;
    return 0;
  }
  d->base = 0;
  return -1;
}

/* Driver initialisation, VIRTIO 1.1 section 3.1.1. */
int virtio_negotiate(struct virtio_dev *d, uint64_t features) {
  features |= VIRTIO_F_VERSION_1;
  REG(d, REG_STATUS) = 0; /* reset */
  while (REG(d, REG_STATUS) != 0) {
  }
  REG(d, REG_STATUS) = STATUS_ACKNOWLEDGE;
  REG(d, REG_STATUS) = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
  uint64_t offered;
  REG(d, REG_DEVICE_FEATURES_SEL) = 0;
  offered = REG(d, REG_DEVICE_FEATURES);
  REG(d, REG_DEVICE_FEATURES_SEL) = 1;
  offered |= (uint64_t)REG(d, REG_DEVICE_FEATURES) << 32;
  if ((offered & features) != features) {
    REG(d, REG_STATUS) = STATUS_FAILED;
    return -1;
  }
  REG(d, REG_DRIVER_FEATURES_SEL) = 0;
  REG(d, REG_DRIVER_FEATURES) = (uint32_t)features;
  REG(d, REG_DRIVER_FEATURES_SEL) = 1;
  REG(d, REG_DRIVER_FEATURES) = (uint32_t)(features >> 32);
  REG(d, REG_STATUS) = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
  if (!(REG(d, REG_STATUS) & STATUS_FEATURES_OK)) {
    REG(d, REG_STATUS) = STATUS_FAILED;
    return -1;
  }
  return 0;
}

int virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t index) {
  memset(q, 0, sizeof *q);
  q->base = d->base;
  q->index = index;
  REG(d, REG_QUEUE_SEL) = index;
  if (REG(d, REG_QUEUE_READY) != 0) return -1;
  if (REG(d, REG_QUEUE_NUM_MAX) < VQ_SIZE) return -1;
  REG(d, REG_QUEUE_NUM) = VQ_SIZE;
  /* Physical addresses are our addresses: M-mode, no translation. */
  REG(d, REG_QUEUE_DESC_LOW) = (uint32_t)(uintptr_t)q->desc;
  REG(d, REG_QUEUE_DESC_HIGH) = 0;
  REG(d, REG_QUEUE_DRIVER_LOW) = (uint32_t)(uintptr_t)&q->avail;
  REG(d, REG_QUEUE_DRIVER_HIGH) = 0;
  REG(d, REG_QUEUE_DEVICE_LOW) = (uint32_t)(uintptr_t)&q->used;
  REG(d, REG_QUEUE_DEVICE_HIGH) = 0;
  REG(d, REG_QUEUE_READY) = 1;
  return 0;
}

void virtio_driver_ok(struct virtio_dev *d) {
  REG(d, REG_STATUS) =
      STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
}

void virtq_submit(struct virtq *q, uint16_t head) {
  volatile uint16_t *idx = &q->avail.idx;
  q->avail.ring[*idx % VQ_SIZE] = head;
  mb(); /* descriptor and ring entry before the index */
  *idx = *idx + 1;
  mb(); /* index before the notification */
  MMIO32(q->base + REG_QUEUE_NOTIFY) = q->index;
}

int virtq_has_used(const struct virtq *q) {
  return *(volatile const uint16_t *)&q->used.idx != q->last_used;
}

int virtq_pop(struct virtq *q, uint32_t *len) {
  if (!virtq_has_used(q)) return -1;
  mb(); /* the index before the element it covers */
  volatile struct virtq_used_elem *e = &q->used.ring[q->last_used % VQ_SIZE];
  int id = (int)e->id;
  if (len) *len = e->len;
  q->last_used++;
  return id;
}

/* ---- interrupts ---- */

volatile uint32_t virtio_irq_count;
static uint32_t irq_base[VIRTIO_MMIO_SLOTS]; /* MMIO base per enabled slot */

/*
 * The only work done in interrupt context: claim the PLIC source,
 * acknowledge the device's interrupt status, complete. Completions are
 * found by the main loop in the used rings.
 */
static void virtio_trap(struct trap_frame *f) {
  if (f->mcause != (MCAUSE_INTERRUPT | IRQ_M_EXT)) {
    trap_unexpected(f);
    return;
  }
  uint32_t irq;
  while ((irq = MMIO32(PLIC_CLAIM_CTX0)) != 0) {
    uint32_t slot = irq - 1;
    if (slot < VIRTIO_MMIO_SLOTS && irq_base[slot]) {
      uint32_t base = irq_base[slot];
      MMIO32(base + REG_INTERRUPT_ACK) = MMIO32(base + REG_INTERRUPT_STATUS);
    }
    virtio_irq_count++;
    MMIO32(PLIC_CLAIM_CTX0) = irq; /* complete */
  }
}

void virtio_irq_enable(struct virtio_dev *d) {
#ifdef VIRTIO_POLL
  (void)d;
#else
  uint32_t irq = 1u + (uint32_t)d->slot;
  irq_base[d->slot] = d->base;
  trap_install(virtio_trap, 0);
  MMIO32(PLIC_PRIORITY(irq)) = 1;
  MMIO32(PLIC_ENABLE_CTX0) |= 1u << irq;
  MMIO32(PLIC_THRESHOLD_CTX0) = 0;
  csr_set(mie, MIE_MEIE);
  irq_enable();
#endif
}

/*
 * The check runs with MIE clear, so an interrupt arriving between the check
 * and wfi stays pending and wfi returns at once (privileged spec 3.3.3);
 * the handler then runs when MIE is set again.
 */
void virtio_wait(int (*ready)(void *), void *arg) {
#ifdef VIRTIO_POLL
  while (!ready(arg)) {
  }
#else
  for (;;) {
    irq_disable();
    if (ready(arg)) break;
    wfi();
    irq_enable();
  }
  irq_enable();
#endif
}

/* ---- virtio-blk (VIRTIO 1.1 section 5.2) ---- */

struct blk_req_hdr {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct blk_req_hdr blk_hdr;
static volatile uint8_t blk_status;

int blk_init(struct virtio_blk *b) {
  if (virtio_find(VIRTIO_DEV_BLK, &b->dev) < 0) return -1;
  if (virtio_negotiate(&b->dev, VIRTIO_BLK_F_FLUSH) < 0) return -1;
  if (virtq_setup(&b->dev, &b->q, 0) < 0) return -1;
  b->capacity = REG(&b->dev, REG_CONFIG) | ((uint64_t)REG(&b->dev, REG_CONFIG + 4) << 32);
  virtio_driver_ok(&b->dev);
  virtio_irq_enable(&b->dev);
  return 0;
}

static int blk_done(void *q) { return virtq_has_used((struct virtq *)q); }

/*
 * One request at a time, always descriptors 0 (header), 1 (data, if any)
 * and 2 (status byte), then wait for the device to return the chain.
 */
int blk_request(struct virtio_blk *b, uint32_t type, uint64_t sector, void *data, uint32_t len,
                int device_writes) {
  struct virtq_desc *d = b->q.desc;
  blk_hdr.type = type;
  blk_hdr.reserved = 0;
  blk_hdr.sector = sector;
  blk_status = 0xff;
  d[0].addr = (uintptr_t)&blk_hdr;
  d[0].len = sizeof blk_hdr;
  d[0].flags = VIRTQ_DESC_F_NEXT;
  d[0].next = 1;
  uint16_t st = 1; /* the status descriptor: 2 when there is data */
  if (len) {
    d[1].addr = (uintptr_t)data;
    d[1].len = len;
    d[1].flags = VIRTQ_DESC_F_NEXT | (device_writes ? VIRTQ_DESC_F_WRITE : 0);
    d[1].next = 2;
    st = 2;
  }
  d[st].addr = (uintptr_t)&blk_status;
  d[st].len = 1;
  d[st].flags = VIRTQ_DESC_F_WRITE;
  d[st].next = 0;
  virtq_submit(&b->q, 0);
  virtio_wait(blk_done, &b->q);
  if (virtq_pop(&b->q, 0) != 0) return -1;
  mb();
  return blk_status;
}

int blk_read(struct virtio_blk *b, uint64_t sector, void *buf, uint32_t count) {
  return blk_request(b, VIRTIO_BLK_T_IN, sector, buf, count * SECTOR_SIZE, 1);
}

int blk_write(struct virtio_blk *b, uint64_t sector, const void *buf, uint32_t count) {
  return blk_request(b, VIRTIO_BLK_T_OUT, sector, (void *)buf, count * SECTOR_SIZE, 0);
}

int blk_flush(struct virtio_blk *b) { return blk_request(b, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0); }

int blk_get_id(struct virtio_blk *b, char id[VIRTIO_BLK_ID_BYTES + 1]) {
  static uint8_t raw[VIRTIO_BLK_ID_BYTES];
  memset(raw, 0, sizeof raw);
  int s = blk_request(b, VIRTIO_BLK_T_GET_ID, 0, raw, sizeof raw, 1);
  /* The id is NUL-padded, and not NUL-terminated when it is 20 bytes. */
  memcpy(id, raw, VIRTIO_BLK_ID_BYTES);
  id[VIRTIO_BLK_ID_BYTES] = 0;
  return s;
}

/* ---- virtio-net (VIRTIO 1.1 section 5.1) ---- */

static uint8_t rx_bufs[NET_RX_BUFS][NET_BUF_LEN] __attribute__((aligned(4)));
static uint8_t tx_bufs[NET_TX_BUFS][NET_BUF_LEN] __attribute__((aligned(4)));

int net_init(struct virtio_net *n) {
  if (virtio_find(VIRTIO_DEV_NET, &n->dev) < 0) return -1;
  if (virtio_negotiate(&n->dev, VIRTIO_NET_F_MAC) < 0) return -1;
  if (virtq_setup(&n->dev, &n->rx, 0) < 0) return -1;
  if (virtq_setup(&n->dev, &n->tx, 1) < 0) return -1;
  for (int i = 0; i < 6; i++) n->mac[i] = MMIO8(n->dev.base + REG_CONFIG + i);
  n->tx_busy = 0;
  /* Descriptor i always describes buffer i, so a used id names its buffer. */
  for (uint16_t i = 0; i < NET_RX_BUFS; i++) {
    n->rx.desc[i].addr = (uintptr_t)rx_bufs[i];
    n->rx.desc[i].len = NET_BUF_LEN;
    n->rx.desc[i].flags = VIRTQ_DESC_F_WRITE;
  }
  for (uint16_t i = 0; i < NET_TX_BUFS; i++) n->tx.desc[i].addr = (uintptr_t)tx_bufs[i];
  virtio_driver_ok(&n->dev);
  for (uint16_t i = 0; i < NET_RX_BUFS; i++) virtq_submit(&n->rx, i);
  virtio_irq_enable(&n->dev);
  return 0;
}

int net_rx_ready(void *n) { return virtq_has_used(&((struct virtio_net *)n)->rx); }

uint8_t *net_rx(struct virtio_net *n, uint32_t *len, int *id) {
  uint32_t l;
  int i = virtq_pop(&n->rx, &l);
  if (i < 0) return 0;
  *id = i;
  if (i >= NET_RX_BUFS || l < NET_HDR_LEN) { /* device bug: recycle, report nothing */
    if (i < NET_RX_BUFS) virtq_submit(&n->rx, (uint16_t)i);
    return 0;
  }
  *len = l - NET_HDR_LEN;
  return rx_bufs[i] + NET_HDR_LEN;
}

void net_rx_release(struct virtio_net *n, int id) { virtq_submit(&n->rx, (uint16_t)id); }

static void tx_reclaim(struct virtio_net *n) {
  int i;
  while ((i = virtq_pop(&n->tx, 0)) >= 0)
    if (i < NET_TX_BUFS) n->tx_busy &= (uint16_t)~(1u << i);
}

static int tx_done(void *n) { return virtq_has_used(&((struct virtio_net *)n)->tx); }

uint8_t *net_tx_buf(struct virtio_net *n, int *id) {
  for (;;) {
    tx_reclaim(n);
    for (int i = 0; i < NET_TX_BUFS; i++) {
      if (!(n->tx_busy & (1u << i))) {
        *id = i;
        return tx_bufs[i] + NET_HDR_LEN;
      }
    }
    virtio_wait(tx_done, n); /* all eight in flight: wait for one back */
  }
}

void net_tx_send(struct virtio_net *n, int id, uint32_t len) {
  /* A zero header: no checksum offload, no GSO, num_buffers unused on TX. */
  memset(tx_bufs[id], 0, NET_HDR_LEN);
  n->tx.desc[id].len = NET_HDR_LEN + len;
  n->tx.desc[id].flags = 0;
  n->tx_busy |= (uint16_t)(1u << id);
  virtq_submit(&n->tx, (uint16_t)id);
}
