/*
 * Interrupt and timer stress. A timer interrupt is re-armed a pseudo-random
 * 20..275 mtime ticks ahead (2..27.5 us) every time it fires, software
 * interrupts are raised from the main loop (half of them inside a window
 * where every register holds a known value, see torture.S), and the main loop opens and
 * closes nested interrupt-disable windows while it computes. Printed:
 * the main loop's own results (identical on every run and every correct
 * machine) and pass/fail checks; never an interrupt count, which depends
 * on host speed.
 */
#include <stdint.h>
#include <stdio.h>

#include "platform.h"

#ifndef ROUNDS
#define ROUNDS 8000
#endif

#define NEVER 0xffffffffffffffffull
/* Rounds between sleeps: each sleep waits for one timer interrupt, which
 * guarantees at least ROUNDS / SLEEP_EVERY of them however fast the host. */
#define SLEEP_EVERY 16

void reg_snapshot(uint32_t key, uint32_t out[32], uint32_t raise_msip);

static volatile uint32_t timer_irqs, soft_irqs, bad_traps;
static uint32_t irq_rng = 0x1234567u; /* the handler's PRNG; never printed */

static void handler(struct trap_frame *f) {
  if (f->mcause == (MCAUSE_INTERRUPT | IRQ_M_TIMER)) {
    timer_irqs++;
    irq_rng ^= irq_rng << 13;
    irq_rng ^= irq_rng >> 17;
    irq_rng ^= irq_rng << 5;
    mtimecmp_write(mtime_read() + 20 + (irq_rng & 0xff));
  } else if (f->mcause == (MCAUSE_INTERRUPT | IRQ_M_SOFT)) {
    soft_irqs++;
    msip_write(0);
  } else {
    bad_traps++;
    f->mepc += 4;
  }
}

/* Interrupt-disable that nests: returns the previous MIE for restore. */
static inline uint32_t irq_save(void) {
  uint32_t prev;
  __asm__ volatile("csrrci %0, mstatus, 8" : "=r"(prev)::"memory");
  return prev & MSTATUS_MIE;
}
static inline void irq_restore(uint32_t prev) { csr_set(mstatus, prev); }

static uint32_t rng = 2463534242u;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

int main(void) {
  trap_install(handler, 0);
  mtimecmp_write(mtime_read() + 100);
  csr_set(mie, MIE_MTIE | MIE_MSIE);
  irq_enable();

  uint32_t sleeps = 0, reg_errors = 0, window_errors = 0, soft_raised = 0, sum = 2166136261u;
  uint32_t snap[32];
  for (uint32_t r = 0; r < ROUNDS; r++) {
    uint32_t key = next_rand();

    /* 1. Every handler-visible register survives interrupts. */
    uint32_t raise = (r & 1) == 0;
    soft_raised += raise;
    reg_snapshot(key, snap, raise);
    for (uint32_t n = 1; n < 32; n++) {
      if (n == 2 || n == 3 || n == 4) continue; /* sp, gp, tp are not filled */
      uint32_t want = n == 10 ? key ^ 0x5a5u : (0x9e3779b9u * n) ^ key;
      if (snap[n] != want) reg_errors++;
    }

    /* 2. Nested disable windows: nothing is taken while either is closed. */
    uint32_t outer = irq_save();
    uint32_t seen = timer_irqs + soft_irqs;
    if (r % 8 == 0) {
      msip_write(1); /* stays pending until the outer window opens */
      soft_raised++;
    }
    uint32_t inner = irq_save();
    for (uint32_t k = 0; k < (key & 63); k++) sum = (sum ^ next_rand()) * 16777619u;
    irq_restore(inner);
    if ((csr_read(mstatus) & MSTATUS_MIE) != 0) window_errors++;
    for (uint32_t k = 0; k < 16; k++) sum += sum << 3;
    if (timer_irqs + soft_irqs != seen) window_errors++;
    irq_restore(outer);

    /* 3. Plain computation with interrupts open, spilling through the stack. */
    volatile uint32_t spill[8];
    for (uint32_t k = 0; k < 8; k++) spill[k] = sum + k * key;
    for (uint32_t k = 0; k < 8; k++) sum = (sum ^ spill[k]) * 16777619u;

    /* 4. Sleep until the next timer interrupt; MIE is clear around the
     * check so the wakeup cannot be lost between check and wfi. */
    if (r % SLEEP_EVERY == SLEEP_EVERY - 1) {
      uint32_t t = timer_irqs;
      irq_disable();
      while (timer_irqs == t) {
        wfi();
        irq_enable();
        irq_disable();
      }
      irq_enable();
      sleeps++;
    }
  }

  /* Let the last software interrupt in before counting, then stop the timer. */
  while (soft_irqs < soft_raised) {
    irq_disable();
    if (soft_irqs < soft_raised) wfi();
    irq_enable();
  }
  irq_disable();
  mtimecmp_write(NEVER);
  csr_write(mie, 0);

  printf("irqstress rounds %lu\n", (unsigned long)ROUNDS);
  printf("checksum %08lx\n", (unsigned long)sum);
  printf("register errors %lu\n", (unsigned long)reg_errors);
  printf("window errors %lu\n", (unsigned long)window_errors);
  printf("software interrupts %lu of %lu\n", (unsigned long)soft_irqs, (unsigned long)soft_raised);
  printf("timer interrupts >= %lu sleeps: %s\n", (unsigned long)sleeps,
         timer_irqs >= sleeps ? "yes" : "no");
  printf("unexpected traps %lu\n", (unsigned long)bad_traps);
  int ok = reg_errors == 0 && window_errors == 0 && soft_irqs == soft_raised &&
           sleeps == ROUNDS / SLEEP_EVERY && timer_irqs >= sleeps && bad_traps == 0;
  printf("irqstress: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
