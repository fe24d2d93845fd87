/*
 * Which CSRs exist, which are read-only, and what each CSR instruction form
 * does to them, compared between QEMU (the golden) and ftvm.
 *
 * Part 1, the map: every CSR number 0x000..0xfff is read with
 * `csrrs a0, n, x0` and, if that did not trap, written back with its own
 * value by `csrrw a0, n, a1`; a number whose read trapped is still tried
 * with csrrw, which only seed accepts (Zkr forbids reading it with a
 * read-only form). Numbers are printed as ranges of one
 * class: `-` does not exist, `r` read-only, `w` read-write, `s` read-write
 * but only through a write form.
 *
 * Part 2, the forms: for one CSR of each class every instruction form runs,
 * with rd=x0 and rs1=x0 variants and a zero-valued rs1 != x0, and one line
 * says whether it trapped (mcause, mepc, and mtval, which QEMU sets to the
 * instruction bits) or what it read and left behind. Values are printed only
 * where both machines must agree: counters, time, seed and the
 * implementation ids vary, and some WARL CSRs keep bits on QEMU that an
 * M-mode-only hart hard-wires to zero (guests/README.md), so for those only
 * the trap is printed.
 */
#include <stdint.h>
#include <stdio.h>

#include "platform.h"

static volatile uint32_t trap_count, last_cause, last_tval, last_epc;
static int failures;

static void record(struct trap_frame *f) {
  trap_count++;
  last_cause = f->mcause;
  last_tval = f->mtval;
  last_epc = f->mepc;
  f->mepc += 4; /* every CSR instruction is 4 bytes: no C extension */
}

/* ---- part 1: the map ---------------------------------------------------- */

extern char csr_read_tab[], csr_write_tab[];
typedef uint32_t (*stub_t)(uint32_t a0, uint32_t a1);

/* Calls stub n of `tab`; returns 1 if its CSR instruction trapped. */
static int try_stub(char *tab, uint32_t n, uint32_t a1, uint32_t *out, int *bad_trap) {
  char *insn = tab + 8 * n;
  trap_count = 0;
  uint32_t v = ((stub_t)(uintptr_t)insn)(0, a1);
  if (trap_count == 0) {
    *out = v;
    return 0;
  }
  if (trap_count != 1 || last_cause != CAUSE_ILLEGAL_INSTRUCTION ||
      last_epc != (uint32_t)(uintptr_t)insn || last_tval != *(uint32_t *)insn)
    *bad_trap = 1;
  return 1;
}

static char classify(uint32_t n, int *bad_trap) {
  uint32_t v = 0;
  if (try_stub(csr_read_tab, n, 0, &v, bad_trap)) {
    /* Only a CSR that refuses read-only forms (seed) can still be written. */
    return try_stub(csr_write_tab, n, 0, &v, bad_trap) ? '-' : 's';
  }
  return try_stub(csr_write_tab, n, v, &v, bad_trap) ? 'r' : 'w';
}

static void map(void) {
  int bad_trap = 0, counts[128] = {0};
  uint32_t first = 0;
  char cls = classify(0, &bad_trap);
  for (uint32_t n = 1; n <= 4096; n++) {
    char c = n < 4096 ? classify(n, &bad_trap) : 0;
    if (c == cls) continue;
    if (first == n - 1)
      printf("map %03lx     %c\n", (unsigned long)first, cls);
    else
      printf("map %03lx-%03lx %c\n", (unsigned long)first, (unsigned long)(n - 1), cls);
    counts[(int)cls] += (int)(n - first);
    first = n;
    cls = c;
  }
  printf("map: %d absent, %d read-only, %d read-write, %d write-form only\n", counts['-'], counts['r'],
         counts['w'], counts['s']);
  printf("map: every trap was mcause=2 at the CSR instruction with mtval=its bits: %s\n",
         bad_trap ? "FAIL" : "yes");
  failures += bad_trap;
}

/* ---- part 2: every form on one CSR of each class ------------------------ */

enum show {
  VALUES,    /* deterministic and the same on both: print what was read and left */
  TRAP_ONLY, /* varies, or WARL bits differ: print only whether it trapped */
  SEED,      /* print the OPST field, the rest is entropy */
};

struct csr_case {
  const char *name;
  uint32_t num;
  enum show show;
  int set_before; /* write `init` before each form (a writable VALUES CSR) */
  uint32_t init;  /* value before each form */
  uint32_t value; /* rs1's value for csrrw/csrrs/csrrc */
};

static const struct csr_case *cur;
static int line_no;

/* Prints the asm text with its operand %3 shown as `csr`, padded to 26 columns. */
static void print_form(const char *form) {
  int col = 0;
  for (const char *p = form; *p; p++, col++) {
    if (p[0] == '%' && p[1] == '3') {
      fputs("csr", stdout);
      p++;
      col += 2;
    } else {
      putchar(*p);
    }
  }
  do putchar(' '); while (++col < 26);
}

static void report(const char *form, uint32_t site, int has_rd, uint32_t rd, uint32_t now) {
  printf("%-11s %03lx ", cur->name, (unsigned long)cur->num);
  print_form(form);
  if (trap_count != 0) {
    printf("trap mcause=%lu mepc=%s mtval=", (unsigned long)last_cause,
           last_epc == site ? "site" : "OTHER");
    if (trap_count != 1 || last_cause != CAUSE_ILLEGAL_INSTRUCTION || last_epc != site ||
        last_tval != *(uint32_t *)(uintptr_t)site)
      failures++;
    if (last_tval == *(uint32_t *)(uintptr_t)site)
      printf("insn\n");
    else
      printf("%08lx (insn %08lx)\n", (unsigned long)last_tval, (unsigned long)*(uint32_t *)(uintptr_t)site);
    return;
  }
  printf("ok");
  if (cur->show == VALUES) {
    if (has_rd) printf(" rd=%08lx", (unsigned long)rd);
    printf(" now=%08lx", (unsigned long)now);
  } else if (cur->show == SEED && has_rd) {
    printf(" opst=%lu", (unsigned long)SEED_OPST(rd));
  }
  printf("\n");
  line_no++;
}

/*
 * One form: `a1` holds `src` and a0 a marker; the instruction at label 1
 * runs (or traps and the handler skips it); then a0 is what rd received.
 */
#define FORM(N, insn, src, has_rd)                                                  \
  do {                                                                              \
    uint32_t site_, rd_, now_ = 0;                                                  \
    if (c->set_before) __asm__ volatile("csrw %0, %1" ::"i"(N), "r"(c->init) : "memory"); \
    trap_count = 0;                                                                 \
    __asm__ volatile("mv a1, %2\n\tli a0, 0x5ee5ee\n\tla %0, 1f\n1:\t" insn "\n\tmv %1, a0" \
                     : "=&r"(site_), "=&r"(rd_)                                     \
                     : "r"(src), "i"(N)                                             \
                     : "a0", "a1", "memory");                                       \
    if (trap_count == 0 && c->show == VALUES)                                       \
      __asm__ volatile("csrr %0, %1" : "=r"(now_) : "i"(N) : "memory");             \
    report(insn, site_, has_rd, rd_, now_);                                         \
  } while (0)

/* Every form. %3 is the CSR number; immediates are 0 or non-zero. */
#define ALL_FORMS(N)                                          \
  do {                                                        \
    FORM(N, "csrrw a0, %3, a1", c->value, 1);                 \
    FORM(N, "csrrw x0, %3, a1", c->value, 0);                 \
    FORM(N, "csrrw a0, %3, x0", 0, 1);                        \
    FORM(N, "csrrs a0, %3, x0", 0, 1);                        \
    FORM(N, "csrrs x0, %3, x0", 0, 0);                        \
    FORM(N, "csrrs a0, %3, a1", c->value, 1);                 \
    FORM(N, "csrrs x0, %3, a1", c->value, 0);                 \
    FORM(N, "csrrs a0, %3, a1 # a1=0", 0, 1);                     \
    FORM(N, "csrrc a0, %3, x0", 0, 1);                        \
    FORM(N, "csrrc a0, %3, a1", c->value, 1);                 \
    FORM(N, "csrrc a0, %3, a1 # a1=0", 0, 1);                     \
    FORM(N, "csrrwi a0, %3, 8", 0, 1);                        \
    FORM(N, "csrrwi x0, %3, 0", 0, 0);                        \
    FORM(N, "csrrsi a0, %3, 0", 0, 1);                        \
    FORM(N, "csrrsi a0, %3, 8", 0, 1);                        \
    FORM(N, "csrrsi x0, %3, 0", 0, 0);                        \
    FORM(N, "csrrci a0, %3, 0", 0, 1);                        \
    FORM(N, "csrrci a0, %3, 8", 0, 1);                        \
  } while (0)

#define CASE(N, name_, show_, set_, init_, value_)                            \
  do {                                                                        \
    static const struct csr_case case_ = {name_, N, show_, set_, init_, value_}; \
    const struct csr_case *c = cur = &case_;                                  \
    ALL_FORMS(N);                                                             \
    if (c->set_before) __asm__ volatile("csrw %0, %1" ::"i"(N), "r"(c->init) : "memory"); \
  } while (0)

static void forms(void) {
  /* Read-write, plain storage: the semantics of each form. */
  CASE(0x340, "mscratch", VALUES, 1, 0x12345670u, 0xa5a5f00fu);
  /* Read-write WARL: only MSIE/MTIE/MEIE exist (rs1 and uimm 8 stay inside them). */
  CASE(0x304, "mie", VALUES, 1, 0x00000088u, 0x00000808u);
  /* Read-write by number, writes ignored. */
  CASE(0x301, "misa", VALUES, 0, 0, 0x40001105u);
  /* Read-write by number, WARL zero on ftvm; QEMU keeps undelegatable bits. */
  CASE(0x302, "medeleg", TRAP_ONLY, 0, 0, 0);
  CASE(0x320, "mcountinh", TRAP_ONLY, 0, 0, 0);
  /* Read-write counter whose value varies. */
  CASE(0xb00, "mcycle", TRAP_ONLY, 0, 0, 0);
  /* Read-only by number (csr[11:10] == 3), fixed values. */
  CASE(0xf14, "mhartid", VALUES, 0, 0, 0x1u);
  CASE(0xf15, "mconfigptr", VALUES, 0, 0, 0x1u);
  /* Read-only, value is the implementation's own. */
  CASE(0xf12, "marchid", TRAP_ONLY, 0, 0, 0x1u);
  /* Read-only user counters, readable in M-mode without U-mode. */
  CASE(0xc00, "cycle", TRAP_ONLY, 0, 0, 0x1u);
  CASE(0xc01, "time", TRAP_ONLY, 0, 0, 0x1u);
  CASE(0xc02, "instret", TRAP_ONLY, 0, 0, 0x1u);
  CASE(0xc81, "timeh", TRAP_ONLY, 0, 0, 0x1u);
  /* Zkr seed: exists, read-write, only through a write form. */
  CASE(0x015, "seed", SEED, 0, 0, 0x1u);
  /* Absent: U-mode CSRs of an M-mode-only hart. */
  CASE(0x306, "mcounteren", VALUES, 0, 0, 0x7u);
  CASE(0x30a, "menvcfg", VALUES, 0, 0, 0x1u);
  CASE(0x31a, "menvcfgh", VALUES, 0, 0, 0x1u);
  /* Absent: a U-mode CSR (fcsr, no F), an S-mode CSR, a read-only-numbered HPM counter. */
  CASE(0x003, "fcsr", VALUES, 0, 0, 0x1u);
  CASE(0x100, "sstatus", VALUES, 0, 0, 0x2u);
  CASE(0x180, "satp", VALUES, 0, 0, 0x1u);
  CASE(0xc03, "hpmcounter3", VALUES, 0, 0, 0x1u);
  /* Absent: PMP, Smepmp, debug triggers. */
  CASE(0x3a0, "pmpcfg0", VALUES, 0, 0, 0x1u);
  CASE(0x747, "mseccfg", VALUES, 0, 0, 0x1u);
  CASE(0x7a0, "tselect", VALUES, 0, 0, 0x1u);
  /* Absent: custom read-write and read-only numbers. */
  CASE(0x7c0, "custom-rw", VALUES, 0, 0, 0x1u);
  CASE(0xfc0, "custom-ro", VALUES, 0, 0, 0x1u);
}

int main(void) {
  trap_install(record, 0);
  map();
  forms();
  printf("csr: %d form lines did not trap\n", line_no);
  printf("csr: %s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
