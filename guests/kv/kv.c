/*
 * A key-value store on UDP port 7000 with a write-ahead log on the virtio
 * disk. The protocol is in PROTOCOL.md. In short: GET/PUT/DEL requests
 * carry a client id and a request id; a PUT or DEL is appended to the log
 * and flushed before it is applied and answered, so an answered write
 * survives a restart (the log is replayed at boot); the last request id and
 * reply of each client are kept, so a retried request is answered again,
 * never applied twice.
 */
#include <stdio.h>
#include <string.h>

#include "netstack.h"
#include "platform.h"
#include "virtio.h"

#define KV_PORT 7000
#define MAX_KEY 64
#define MAX_VALUE 256
#define MAX_KEYS 256
#define MAX_CLIENTS 64
#define HDR 16

#define REQ_MAGIC 0x4b /* 'K' */
#define REP_MAGIC 0x6b /* 'k' */
#define OP_GET 1
#define OP_PUT 2
#define OP_DEL 3
#define ST_OK 0
#define ST_NOT_FOUND 1
#define ST_BAD_REQUEST 2
#define ST_STALE 3
#define ST_FULL 4
#define ST_IO_ERROR 5

/* ---- the store ---- */

struct entry {
  uint8_t used, klen;
  uint16_t vlen;
  uint8_t key[MAX_KEY];
  uint8_t value[MAX_VALUE];
};
static struct entry table[MAX_KEYS];
static int nkeys;

/* A linear scan: MAX_KEYS is small and the code stays obvious. */
static struct entry *lookup(const uint8_t *key, uint8_t klen) {
  for (int i = 0; i < MAX_KEYS; i++)
    if (table[i].used && table[i].klen == klen && memcmp(table[i].key, key, klen) == 0)
      return &table[i];
  return 0;
}

static int has_room(const uint8_t *key, uint8_t klen) {
  return lookup(key, klen) || nkeys < MAX_KEYS;
}

static void apply_put(const uint8_t *key, uint8_t klen, const uint8_t *v, uint16_t vlen) {
  struct entry *e = lookup(key, klen);
  if (!e) {
    for (e = table; e->used; e++) {
    }
    e->used = 1;
    e->klen = klen;
    memcpy(e->key, key, klen);
    nkeys++;
  }
  e->vlen = vlen;
  memcpy(e->value, v, vlen);
}

static void apply_del(struct entry *e) {
  e->used = 0;
  nkeys--;
}

/* ---- per-client exactly-once state ---- */

struct client {
  uint32_t id, last_req, stamp; /* stamp: for least-recently-used eviction */
  uint16_t reply_len;
  uint8_t reply[HDR + MAX_VALUE];
};
static struct client clients[MAX_CLIENTS];
static uint32_t clock_stamp;

/* The client's slot, taking the least recently used one for a newcomer. */
static struct client *client_slot(uint32_t id) {
  struct client *victim = &clients[0];
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (clients[i].stamp && clients[i].id == id) {
      clients[i].stamp = ++clock_stamp;
      return &clients[i];
    }
    if (clients[i].stamp < victim->stamp) victim = &clients[i];
  }
  memset(victim, 0, sizeof *victim);
  victim->id = id;
  victim->stamp = ++clock_stamp;
  return victim;
}

static void make_reply(uint8_t *r, uint8_t op, uint8_t status, uint32_t cid, uint32_t rid,
                       uint16_t vlen) {
  r[0] = REP_MAGIC;
  r[1] = op;
  r[2] = status;
  r[3] = 0;
  put32(r + 4, cid);
  put32(r + 8, rid);
  put16(r + 12, vlen);
  put16(r + 14, 0);
}

/* Records `status` as the answer to (client, request) without a value. */
static void remember(struct client *c, uint32_t rid, uint8_t op, uint8_t status) {
  c->last_req = rid;
  make_reply(c->reply, op, status, c->id, rid, 0);
  c->reply_len = HDR;
}

/* ---- the write-ahead log: one record per 512-byte sector ---- */

#define WAL_MAGIC 0x4b565731u /* "KVW1" */
#define WAL_CRC_AT (SECTOR_SIZE - 4)

static struct virtio_blk disk;
static uint32_t wal_next; /* the sector the next record goes to */
static uint8_t sector[SECTOR_SIZE] __attribute__((aligned(8)));

static uint32_t crc32(const uint8_t *p, uint32_t n) {
  uint32_t c = 0xffffffffu;
  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & -(c & 1));
  }
  return ~c;
}

/*
 * Record layout (big-endian): magic, seq (= its sector number), client id,
 * request id, op, status, key length, 0, value length, 0, key, value, and
 * a CRC-32 of everything before it in the last four bytes of the sector.
 */
static int wal_append(uint32_t cid, uint32_t rid, uint8_t op, uint8_t status, const uint8_t *key,
                      uint8_t klen, const uint8_t *v, uint16_t vlen) {
  if (wal_next >= disk.capacity) return ST_FULL;
  memset(sector, 0, sizeof sector);
  put32(sector, WAL_MAGIC);
  put32(sector + 4, wal_next);
  put32(sector + 8, cid);
  put32(sector + 12, rid);
  sector[16] = op;
  sector[17] = status;
  sector[18] = klen;
  put16(sector + 20, vlen);
  memcpy(sector + 24, key, klen);
  memcpy(sector + 24 + klen, v, vlen);
  put32(sector + WAL_CRC_AT, crc32(sector, WAL_CRC_AT));
  /* Durable before the reply: the write, then a flush of the disk cache. */
  if (blk_write(&disk, wal_next, sector, 1) != VIRTIO_BLK_S_OK) return ST_IO_ERROR;
  if (blk_flush(&disk) != VIRTIO_BLK_S_OK) return ST_IO_ERROR;
  wal_next++;
  return ST_OK;
}

/* Replays records until the first sector that is not the next record. */
static int wal_replay(void) {
  for (wal_next = 0; wal_next < disk.capacity; wal_next++) {
    if (blk_read(&disk, wal_next, sector, 1) != VIRTIO_BLK_S_OK) return -1;
    if (get32(sector) != WAL_MAGIC || get32(sector + 4) != wal_next ||
        get32(sector + WAL_CRC_AT) != crc32(sector, WAL_CRC_AT))
      break;
    uint32_t cid = get32(sector + 8), rid = get32(sector + 12);
    uint8_t op = sector[16], status = sector[17], klen = sector[18];
    uint16_t vlen = get16(sector + 20);
    if (klen > MAX_KEY || vlen > MAX_VALUE) break;
    if (op == OP_PUT) {
      if (!has_room(sector + 24, klen)) break;
      apply_put(sector + 24, klen, sector + 24 + klen, vlen);
    } else if (op == OP_DEL) {
      struct entry *e = lookup(sector + 24, klen);
      if (e) apply_del(e);
    }
    remember(client_slot(cid), rid, op, status);
  }
  return 0;
}

/* ---- requests ---- */

static void send_bytes(const struct udp_peer *to, const uint8_t *r, uint16_t len) {
  udp_send(to, r, len);
}

static void kv_request(const struct udp_peer *from, const uint8_t *q, uint32_t len) {
  if (len < HDR || q[0] != REQ_MAGIC) return; /* not ours: drop */
  uint8_t op = q[1], klen = q[2];
  uint32_t cid = get32(q + 4), rid = get32(q + 8);
  uint16_t vlen = get16(q + 12);
  const uint8_t *key = q + HDR, *value = key + klen;
  static uint8_t r[HDR + MAX_VALUE];

  int bad = rid == 0 || klen == 0 || klen > MAX_KEY || vlen > MAX_VALUE ||
            len != (uint32_t)(HDR + klen + vlen) || (op != OP_PUT && vlen != 0) ||
            (op != OP_GET && op != OP_PUT && op != OP_DEL);
  if (bad) { /* answered, but not remembered: it changed nothing */
    make_reply(r, op, ST_BAD_REQUEST, cid, rid, 0);
    send_bytes(from, r, HDR);
    return;
  }
  struct client *c = client_slot(cid);
  if (rid == c->last_req) { /* a retry: the same answer, not a second apply */
    send_bytes(from, c->reply, c->reply_len);
    return;
  }
  if (rid < c->last_req) { /* older than one already answered */
    make_reply(r, op, ST_STALE, cid, rid, 0);
    send_bytes(from, r, HDR);
    return;
  }
  struct entry *e = lookup(key, klen);
  if (op == OP_GET) {
    c->last_req = rid;
    if (e) {
      make_reply(c->reply, op, ST_OK, cid, rid, e->vlen);
      memcpy(c->reply + HDR, e->value, e->vlen);
      c->reply_len = (uint16_t)(HDR + e->vlen);
    } else {
      remember(c, rid, op, ST_NOT_FOUND);
    }
  } else if (op == OP_PUT) {
    int st = has_room(key, klen) ? wal_append(cid, rid, op, ST_OK, key, klen, value, vlen)
                                 : ST_FULL;
    if (st == ST_OK) apply_put(key, klen, value, vlen);
    remember(c, rid, op, (uint8_t)st);
  } else { /* OP_DEL: only a delete that removes something is logged */
    int st = e ? wal_append(cid, rid, op, ST_OK, key, klen, 0, 0) : ST_NOT_FOUND;
    if (e && st == ST_OK) apply_del(e);
    remember(c, rid, op, (uint8_t)st);
  }
  send_bytes(from, c->reply, c->reply_len);
}

int main(void) {
  if (blk_init(&disk) < 0) {
    printf("kv: no virtio-blk disk\n");
    return 1;
  }
  if (wal_replay() < 0) {
    printf("kv: cannot read the log\n");
    return 1;
  }
  if (net_start() < 0) {
    printf("kv: no virtio-net device\n");
    return 1;
  }
  udp_bind(KV_PORT, kv_request);
  printf("kv: replayed %lu log records, %d keys\n", (unsigned long)wal_next, nkeys);
  net_serve();
}
