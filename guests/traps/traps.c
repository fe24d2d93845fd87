/*
 * Synchronous traps and CSR semantics. Every probe runs one faulting (or
 * not faulting) instruction under a handler that records mcause, mtval and
 * mepc and resumes after it; the guest prints what it saw, relative to the
 * probe's own address, so output is identical on QEMU and ftvm.
 */
#include <stdint.h>
#include <stdio.h>

#include "platform.h"

static volatile uint32_t trap_count, last_cause, last_tval, last_epc, last_mstatus;

static void record(struct trap_frame *f) {
  trap_count++;
  last_cause = f->mcause;
  last_tval = f->mtval;
  last_epc = f->mepc;
  last_mstatus = f->mstatus;
  f->mepc += 4; /* every probe instruction is 4 bytes: no C extension */
}

static int failures;
static void check(const char *what, int ok) {
  printf("%-34s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) failures++;
}

/*
 * Runs the instruction at `insn` label inside the asm and reports the trap.
 * `site` receives the instruction's address for mepc comparisons.
 */
#define PROBE(site, asmtext, ...)                                        \
  do {                                                                   \
    trap_count = 0;                                                      \
    last_cause = last_tval = last_epc = 0xffffffffu;                     \
    __asm__ volatile("la %0, 1f\n1: " asmtext : "=&r"(site), ##__VA_ARGS__); \
  } while (0)

static void report(const char *name, uint32_t site) {
  if (trap_count == 0) {
    printf("%-10s no trap\n", name);
    return;
  }
  const char *tv = last_tval == 0 ? "0" : last_tval == site ? "pc" : "value";
  printf("%-10s traps=%lu mcause=%lu mepc=%s mtval=%s", name, (unsigned long)trap_count,
         (unsigned long)last_cause, last_epc == site ? "site" : "OTHER", tv);
  if (tv[0] == 'v') printf(" (%08lx)", (unsigned long)last_tval);
  printf("\n");
}

static uint8_t buf[16] __attribute__((aligned(8)));

static void misaligned(void) {
  for (int i = 0; i < 16; i++) buf[i] = (uint8_t)(0x10 + i * 0x11);
  uint32_t site, v;
  PROBE(site, "lh %1, 1(%2)", "=&r"(v) : "r"(buf));
  printf("lh  +1 = %08lx traps=%lu\n", (unsigned long)v, (unsigned long)trap_count);
  PROBE(site, "lhu %1, 3(%2)", "=&r"(v) : "r"(buf));
  printf("lhu +3 = %08lx traps=%lu\n", (unsigned long)v, (unsigned long)trap_count);
  PROBE(site, "lw %1, 1(%2)", "=&r"(v) : "r"(buf));
  printf("lw  +1 = %08lx traps=%lu\n", (unsigned long)v, (unsigned long)trap_count);
  PROBE(site, "lw %1, 7(%2)", "=&r"(v) : "r"(buf));
  printf("lw  +7 = %08lx traps=%lu\n", (unsigned long)v, (unsigned long)trap_count);
  /* Stores take the value as %2 and the base as %3; %1 is an unused output. */
  PROBE(site, "sw %2, 5(%3)", "=r"(v) : "r"(0xa1b2c3d4u), "r"(buf));
  printf("sw  +5 traps=%lu\n", (unsigned long)trap_count);
  PROBE(site, "sh %2, 11(%3)", "=r"(v) : "r"(0xbeefu), "r"(buf));
  printf("sh  +11 traps=%lu\n", (unsigned long)trap_count);
  (void)site;
  printf("buf =");
  for (int i = 0; i < 16; i++) printf(" %02x", buf[i]);
  printf("\n");
}

/* NOTE: picked where QEMU virt maps nothing and ftvm maps nothing either. */
#define UNMAPPED 0xf0000000u

static void access_faults(void) {
  uint32_t site, v = 0x12345678u;
  PROBE(site, "lw %1, 0(%2)", "+&r"(v) : "r"(UNMAPPED));
  report("load", site);
  if (trap_count) printf("  mtval==addr %s, rd kept %s\n", last_tval == UNMAPPED ? "yes" : "no",
                         v == 0x12345678u ? "yes" : "no");
  else printf("  read %08lx\n", (unsigned long)v);
  PROBE(site, "sw %2, 0(%2)", "=r"(v) : "r"(UNMAPPED + 8));
  report("store", site);
  if (trap_count) printf("  mtval==addr %s\n", last_tval == UNMAPPED + 8 ? "yes" : "no");
}

int main(void) {
  trap_install(record, 0);
  uint32_t site, v;

  PROBE(site, "ecall");
  report("ecall", site);
  PROBE(site, "ebreak");
  report("ebreak", site);
  PROBE(site, ".word 0x00000000");
  report("zero-insn", site);
  PROBE(site, ".word 0x0000000b"); /* custom-0 major opcode: not implemented */
  report("custom-0", site);
  PROBE(site, "csrr %1, 0x7c0", "=r"(v)); /* custom M-mode CSR: not implemented */
  report("csr 0x7c0", site);
  printf("  mtval is the insn %s\n", last_tval == 0x7c002573u || last_tval == *(uint32_t *)site
                                          ? "yes" : "no");
  PROBE(site, "csrw mvendorid, %1", "=r"(v) : "r"(1)); /* read-only CSR */
  report("csrw ro", site);
  PROBE(site, "csrr %1, 0x015", "=r"(v)); /* seed read without write: illegal */
  report("seed csrr", site);

  misaligned();
  access_faults();

  check("misa = RV32 I M", csr_read(misa) == 0x40001100u);
  printf("misa=%08lx mhartid=%lu mvendorid=%lu\n", (unsigned long)csr_read(misa),
         (unsigned long)csr_read(mhartid), (unsigned long)csr_read(mvendorid));

  csr_write(mscratch, 0xcafef00du);
  uint32_t old = csr_swap(mscratch, 0x13572468u);
  check("mscratch write/read", old == 0xcafef00du && csr_read(mscratch) == 0x13572468u);
  csr_set(mscratch, 0x80000001u);
  csr_clear(mscratch, 0x00000468u);
  check("mscratch csrrs/csrrc", csr_read(mscratch) == 0x93572001u);

  /*
   * mret: MIE <- MPIE, MPIE <- 1 (privileged spec 3.1.6.1). MPP is set to M
   * before each mret so it returns to M-mode; what mret leaves in MPP is not
   * printed, since QEMU 7.2 writes U there even with U-mode disabled.
   * mie stays 0, so setting MIE lets no interrupt in.
   */
  csr_write(mie, 0);
  trap_count = 0;
  csr_clear(mstatus, MSTATUS_MIE);
  csr_set(mstatus, MSTATUS_MPIE | MSTATUS_MPP);
  uint32_t after;
  __asm__ volatile("la t0, 1f\n csrw mepc, t0\n mret\n 1: csrr %0, mstatus"
                   : "=r"(after)::"t0", "memory");
  printf("mret MPIE=1: MIE=%lu MPIE=%lu\n", (unsigned long)((after >> 3) & 1),
         (unsigned long)((after >> 7) & 1));
  csr_clear(mstatus, MSTATUS_MIE | MSTATUS_MPIE);
  csr_set(mstatus, MSTATUS_MPP);
  __asm__ volatile("la t0, 1f\n csrw mepc, t0\n mret\n 1: csrr %0, mstatus"
                   : "=r"(after)::"t0", "memory");
  printf("mret MPIE=0: MIE=%lu MPIE=%lu\n", (unsigned long)((after >> 3) & 1),
         (unsigned long)((after >> 7) & 1));
  check("mret stayed in M-mode", trap_count == 0);

  /* Trap entry: MPIE <- MIE, MIE <- 0; mret then restores MIE. */
  csr_set(mstatus, MSTATUS_MIE);
  PROBE(site, "ecall");
  after = csr_read(mstatus);
  csr_clear(mstatus, MSTATUS_MIE);
  printf("in trap: MIE=%lu MPIE=%lu MPP=%lu; after mret: MIE=%lu\n",
         (unsigned long)((last_mstatus >> 3) & 1), (unsigned long)((last_mstatus >> 7) & 1),
         (unsigned long)((last_mstatus >> 11) & 3), (unsigned long)((after >> 3) & 1));

  uint32_t seed = seed_read();
  check("seed OPST is ES16", SEED_OPST(seed) == SEED_OPST_ES16);
  uint32_t seeds = 0;
  for (int i = 0; i < 8; i++) seeds += SEED_OPST(seed_read()) == SEED_OPST_ES16;
  printf("seed ES16 reads %lu/8\n", (unsigned long)seeds);

  printf("traps: %s\n", failures ? "FAIL" : "PASS");
  return failures;
}
