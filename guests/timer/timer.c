/*
 * Machine timer and software interrupts. Prints counts and pass/fail only,
 * never a time, so output does not depend on host speed.
 */
#include <stdint.h>
#include <stdio.h>

#include "platform.h"

#define TICKS 50
#define PERIOD 10000u /* mtime ticks: 1 ms at 10 MHz */
#define NEVER 0xffffffffffffffffull

static volatile uint32_t timer_irqs, soft_irqs, other_traps, late_checks_failed;
static volatile uint32_t vector_slot_bad, ecall_seen;
static volatile uint64_t next_cmp;

static int failures;
static void check(const char *what, int ok) {
  printf("%-40s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) failures++;
}

/*
 * Sleeps until *counter changes. Checking and then executing wfi with MIE
 * set would lose a wakeup if the interrupt came between the two (wfi would
 * then sleep with nothing left to wake it), so the check runs with MIE
 * clear: wfi still wakes on a pending enabled interrupt (privileged spec
 * 3.3.3) and the interrupt is taken in the short window after it.
 */
static void wait_for_change(volatile uint32_t *counter) {
  uint32_t seen = *counter;
  irq_disable();
  while (*counter == seen) {
    wfi();
    irq_enable();
    irq_disable();
  }
}

static void on_timer(void) {
  /* The interrupt may only be taken once mtime has reached mtimecmp. */
  if (mtime_read() < next_cmp) late_checks_failed++;
  if (++timer_irqs >= TICKS) {
    csr_clear(mie, MIE_MTIE);
    mtimecmp_write(NEVER);
  } else {
    next_cmp += PERIOD;
    mtimecmp_write(next_cmp);
  }
}

static void handler(struct trap_frame *f) {
  if (f->mcause == (MCAUSE_INTERRUPT | IRQ_M_TIMER)) {
    on_timer();
  } else if (f->mcause == (MCAUSE_INTERRUPT | IRQ_M_SOFT)) {
    soft_irqs++;
    msip_write(0);
  } else if (f->mcause == CAUSE_ECALL_M) {
    ecall_seen++;
    f->mepc += 4;
  } else {
    other_traps++;
    f->mepc += 4;
  }
}

/* Vectored mode: interrupts arrive at slot = cause, exceptions at slot 0. */
static void vectored_handler(struct trap_frame *f) {
  uint32_t expect = (f->mcause & MCAUSE_INTERRUPT) ? (f->mcause & 0x1f) : 0;
  if (f->x[0] != expect) vector_slot_bad++;
  handler(f);
}

int main(void) {
  trap_install(handler, 0);
  csr_write(mie, 0);

  /* 1. Periodic timer interrupts, sleeping in wfi between them. */
  /*
   * Every compare value counts from `start` itself, so the 50th interrupt
   * comes at mtime >= start + TICKS * PERIOD. (Computing the first compare
   * from an earlier read let a host stall between the two reads shorten the
   * measured interval.)
   */
  uint64_t start = mtime_read();
  next_cmp = start + PERIOD;
  mtimecmp_write(next_cmp);
  csr_set(mie, MIE_MTIE);
  while (timer_irqs < TICKS) wait_for_change(&timer_irqs);
  uint64_t end = mtime_read();
  printf("timer interrupts: %lu\n", (unsigned long)timer_irqs);
  check("interrupts never before mtimecmp", late_checks_failed == 0);
  check("elapsed mtime >= ticks * period", end - start >= (uint64_t)TICKS * PERIOD);

  /* 2. mtime and the time CSR are monotonic and agree. */
  int mono = 1, agree = 1;
  uint64_t prev = mtime_read();
  for (int i = 0; i < 1000; i++) {
    uint64_t a = rdtime64(), b = mtime_read(), c = rdtime64();
    if (!(a <= b && b <= c)) agree = 0;
    if (b < prev) mono = 0;
    prev = b;
  }
  check("mtime monotonic", mono);
  check("time CSR brackets mtime", agree);

  /* 3. MTIP is level-triggered by mtimecmp; wfi wakes with MIE=0. */
  mtimecmp_write(0);
  check("MTIP set when mtime >= mtimecmp", (csr_read(mip) & MIP_MTIP) != 0);
  mtimecmp_write(NEVER);
  check("MTIP clear when mtimecmp is far", (csr_read(mip) & MIP_MTIP) == 0);
  csr_set(mie, MIE_MTIE);
  mtimecmp_write(mtime_read() + PERIOD);
  while (!(csr_read(mip) & MIP_MTIP)) wfi();
  check("wfi with MIE=0 took no interrupt", timer_irqs == TICKS);
  mtimecmp_write(NEVER);
  csr_clear(mie, MIE_MTIE);

  /* 4. Software interrupt through CLINT msip, taken at once when enabled. */
  msip_write(1);
  check("MSIP pending while disabled", (csr_read(mip) & MIP_MSIP) != 0 && soft_irqs == 0);
  csr_set(mie, MIE_MSIE);
  /* NOTE: QEMU takes interrupts only between translation blocks, so wait
   * for the handler rather than assume it ran by the next instruction. */
  wait_for_change(&soft_irqs);
  printf("software interrupts: %lu\n", (unsigned long)soft_irqs);
  check("MSIP cleared by handler", (csr_read(mip) & MIP_MSIP) == 0);
  csr_clear(mie, MIE_MSIE);

  /* 5. Vectored mtvec: one timer, one software interrupt and one ecall. */
  trap_install(vectored_handler, 1);
  check("mtvec MODE=1 readable", (csr_read(mtvec) & 3) == 1);
  uint32_t before = timer_irqs;
  next_cmp = mtime_read() + PERIOD;
  mtimecmp_write(next_cmp);
  csr_set(mie, MIE_MTIE | MIE_MSIE);
  wait_for_change(&timer_irqs);
  msip_write(1);
  wait_for_change(&soft_irqs);
  mtimecmp_write(NEVER);
  csr_write(mie, 0);
  __asm__ volatile("ecall");
  trap_install(handler, 0);
  printf("vectored: timer %lu, software %lu, ecall %lu\n", (unsigned long)(timer_irqs - before),
         (unsigned long)(soft_irqs - 1), (unsigned long)ecall_seen);
  check("vectored slots match mcause", vector_slot_bad == 0);
  check("no unexpected traps", other_traps == 0);

  printf("timer: %s\n", failures ? "FAIL" : "PASS");
  return failures;
}
