/*
 * virtio-blk conformance guest. Expects a fresh, all-zero 1 MiB raw disk
 * with serial "ftvm-disk0" (guests/qemu-io.sh sets both up). Writes known
 * patterns in single- and multi-sector requests, flushes, reads them back
 * in other request sizes, and prints only checksums, statuses and
 * pass/fail, so the output is golden-comparable on QEMU and on ftvm.
 */
#include <stdio.h>
#include <string.h>

#include "platform.h"
#include "virtio.h"

#define MAX_SECTORS 16

static struct virtio_blk blk;
static uint8_t buf[MAX_SECTORS * SECTOR_SIZE] __attribute__((aligned(8)));
static uint8_t want[MAX_SECTORS * SECTOR_SIZE];
static int failures;

static void check(const char *what, int ok) {
  printf("%-44s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) failures++;
}

/* FNV-1a: a checksum anyone can recompute from the golden's description. */
static uint32_t fnv1a(const uint8_t *p, uint32_t n) {
  uint32_t h = 2166136261u;
  while (n--) h = (h ^ *p++) * 16777619u;
  return h;
}

/* The pattern of sector `s` in generation `gen`: a byte per offset. */
static void pattern(uint8_t *p, uint32_t s, uint32_t gen, uint32_t count) {
  for (uint32_t k = 0; k < count; k++)
    for (uint32_t i = 0; i < SECTOR_SIZE; i++) {
      uint32_t x = (s + k) * 2654435761u ^ (i * 40503u) ^ (gen << 24);
      p[k * SECTOR_SIZE + i] = (uint8_t)(x >> 13 ^ x);
    }
}

/* Writes `count` sectors at `s` in one request. */
static void write_region(uint32_t s, uint32_t count, uint32_t gen) {
  char what[64];
  pattern(buf, s, gen, count);
  int st = blk_write(&blk, s, buf, count);
  snprintf(what, sizeof what, "write %4lu+%-2lu gen %lu", (unsigned long)s, (unsigned long)count,
           (unsigned long)gen);
  check(what, st == VIRTIO_BLK_S_OK);
}

/* Reads `count` sectors at `s` in requests of `per` sectors and compares. */
static void read_region(uint32_t s, uint32_t count, uint32_t per, uint32_t gen) {
  char what[64];
  int st_ok = 1;
  memset(buf, 0xa5, sizeof buf); /* so a read that writes nothing is caught */
  for (uint32_t k = 0; k < count; k += per)
    st_ok &= blk_read(&blk, s + k, buf + k * SECTOR_SIZE, per) == VIRTIO_BLK_S_OK;
  pattern(want, s, gen, count);
  uint32_t n = count * SECTOR_SIZE;
  snprintf(what, sizeof what, "read  %4lu+%-2lu by %-2lu fnv %08lx", (unsigned long)s,
           (unsigned long)count, (unsigned long)per, (unsigned long)fnv1a(buf, n));
  check(what, st_ok && memcmp(buf, want, n) == 0);
}

int main(void) {
  char id[VIRTIO_BLK_ID_BYTES + 1];
  char what[64];
  printf("blkcheck: virtio-blk conformance\n");
  if (blk_init(&blk) < 0) {
    printf("no virtio-blk device (version 2)\nblkcheck: FAIL\n");
    return 1;
  }
  printf("capacity %lu sectors\n", (unsigned long)blk.capacity);
  check("capacity is 2048 sectors (1 MiB)", blk.capacity == 2048);
  int st = blk_get_id(&blk, id);
  printf("id \"%s\"\n", id);
  check("get-id status ok, id ftvm-disk0", st == VIRTIO_BLK_S_OK && strcmp(id, "ftvm-disk0") == 0);

  /* A fresh disk reads as zeros. */
  memset(buf, 0xa5, sizeof buf);
  st = blk_read(&blk, 0, buf, MAX_SECTORS);
  memset(want, 0, sizeof want);
  snprintf(what, sizeof what, "fresh 0+16 zero, fnv %08lx", (unsigned long)fnv1a(buf, sizeof buf));
  check(what, st == VIRTIO_BLK_S_OK && memcmp(buf, want, sizeof buf) == 0);

  /* Generation 1: single sectors, a 16-sector request, the last sector. */
  write_region(0, 1, 1);
  write_region(1, 1, 1);
  write_region(7, 1, 1);
  write_region(16, 16, 1);
  write_region(100, 4, 1);
  write_region(2047, 1, 1);
  check("flush", blk_flush(&blk) == VIRTIO_BLK_S_OK);
  read_region(0, 2, 2, 1);
  read_region(7, 1, 1, 1);
  read_region(16, 16, 1, 1);
  read_region(16, 16, 4, 1);
  read_region(100, 4, 4, 1);
  read_region(2047, 1, 1, 1);

  /* Generation 2 overwrites the middle of the 16-sector region. */
  write_region(20, 8, 2);
  check("flush", blk_flush(&blk) == VIRTIO_BLK_S_OK);
  read_region(16, 4, 4, 1);
  read_region(20, 8, 8, 2);
  read_region(28, 4, 2, 1);

  /* Sectors never written are still zero. */
  memset(buf, 0xa5, sizeof buf);
  st = blk_read(&blk, 2, buf, 5);
  memset(want, 0, sizeof want);
  check("unwritten 2+5 still zero", st == VIRTIO_BLK_S_OK && memcmp(buf, want, 5 * 512) == 0);

  /* Errors: beyond the end, straddling the end, an unknown request type. */
  st = blk_read(&blk, 2048, buf, 1);
  snprintf(what, sizeof what, "read past end: status %d (IOERR)", st);
  check(what, st == VIRTIO_BLK_S_IOERR);
  st = blk_write(&blk, 2046, buf, 4);
  snprintf(what, sizeof what, "write across end: status %d (IOERR)", st);
  check(what, st == VIRTIO_BLK_S_IOERR);
  st = blk_request(&blk, 0xff, 0, 0, 0, 0);
  snprintf(what, sizeof what, "unknown type 255: status %d (UNSUPP)", st);
  check(what, st == VIRTIO_BLK_S_UNSUPP);
  read_region(2047, 1, 1, 1); /* the failed write changed nothing */

  /* Completions arrive as PLIC interrupts (how many depends on timing). */
  check("completions raised PLIC interrupts", virtio_irq_count > 0);
  printf("blkcheck: %s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
