/*
 * The fault-tolerance demo guest. Prints SEQ_LINES numbered lines
 *
 *   seq 000001 9a3c01f2
 *
 * whose checksum is seq_check(i) (README.md gives the formula), so a client
 * can verify every line from its number alone. Between lines it consumes
 * every kind of non-determinism the log must carry: 1 kHz timer interrupts,
 * mtime, the time CSR, the RTC and the seed CSR, all folded into `noise`,
 * which steers nothing that is printed. Every SEQ_IDLE_EVERY lines it
 * sleeps in wfi until the next tick, so both busy and idle paths occur.
 */
#include <stdint.h>
#include <stdio.h>

#include "platform.h"

#ifndef SEQ_LINES
#define SEQ_LINES 2000
#endif
#ifndef SEQ_WORK
#define SEQ_WORK 40000 /* xorshift rounds per line: about 300k instructions */
#endif
#ifndef SEQ_IDLE_EVERY
#define SEQ_IDLE_EVERY 8
#endif

#define TICK 10000u /* 1 kHz at mtime's 10 MHz */

static volatile uint32_t ticks;
static volatile uint32_t noise;
static uint64_t next_tick;

static void handler(struct trap_frame *f) {
  if (f->mcause == (MCAUSE_INTERRUPT | IRQ_M_TIMER)) {
    ticks++;
    next_tick += TICK;
    uint64_t now = mtime_read();
    /* After a long stall, skip missed ticks instead of firing back to back. */
    if (next_tick <= now) next_tick = now + TICK;
    mtimecmp_write(next_tick);
    noise = noise * 31u + (uint32_t)now;
    return;
  }
  trap_unexpected(f);
}

/* The documented checksum: FNV-1a over i's 4 bytes (little-endian), then
 * SEQ_WORK rounds of xorshift32 (13, 17, 5). */
static uint32_t seq_check(uint32_t i) {
  uint32_t x = 2166136261u;
  for (int b = 0; b < 4; b++) {
    x ^= (i >> (8 * b)) & 0xffu;
    x *= 16777619u;
  }
  if (x == 0) x = 1;
  for (uint32_t k = 0; k < SEQ_WORK; k++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
  }
  return x;
}

/* Sleeps until the tick count moves; MIE is clear around the check so a
 * tick between the check and wfi cannot be lost (see timer.c). */
static void idle_until_tick(void) {
  uint32_t seen = ticks;
  irq_disable();
  while (ticks == seen) {
    wfi();
    irq_enable();
    irq_disable();
  }
  irq_enable();
}

int main(void) {
  trap_install(handler, 0);
  next_tick = mtime_read() + TICK;
  mtimecmp_write(next_tick);
  csr_set(mie, MIE_MTIE);
  irq_enable();

  for (uint32_t i = 1; i <= SEQ_LINES; i++) {
    uint32_t c = seq_check(i);
    uint32_t s = seed_read();
    uint32_t n = (uint32_t)mtime_read() ^ (uint32_t)rdtime64() ^ (uint32_t)rtc_read_ns();
    irq_disable();
    noise = (noise ^ s ^ n) * 0x9e3779b9u;
    irq_enable();
    printf("seq %06lu %08lx\n", (unsigned long)i, (unsigned long)c);
    if (i % SEQ_IDLE_EVERY == 0) idle_until_tick();
  }
  irq_disable();
  mtimecmp_write(0xffffffffffffffffull);
  printf("seq done %lu\n", (unsigned long)SEQ_LINES);
  return 0;
}
