/*
 * CPU benchmark guest. Five sections, each folded into a 32-bit checksum
 * that depends only on the computation, so QEMU and ftvm print the same
 * bytes however fast the host is. BENCH_SCALE multiplies the work of every
 * section: 1 is 20.6 M instructions (bench-small, for tests), the default
 * 20 is 399 M (bench, for measuring); counted as minstret under QEMU
 * -icount shift=0 with -DBENCH_REPORT_INSTRET.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "platform.h"

#ifndef BENCH_SCALE
#define BENCH_SCALE 20
#endif

static uint32_t mix(uint32_t h, uint32_t v) {
  h ^= v;
  h *= 0x01000193u; /* FNV-1a prime */
  return h;
}

/* --- 1. integer ALU: shifts, logic, add/sub, set-less-than ---------------- */
static uint32_t sec_arith(uint32_t rounds) {
  uint32_t x = 0x12345678u, y = 0x9abcdef0u, h = 2166136261u;
  for (uint32_t r = 0; r < rounds; r++) {
    for (uint32_t i = 0; i < 1000; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      y = (y + x) ^ (y >> 3);
      int32_t sx = (int32_t)x;
      y += (uint32_t)(sx >> 7) + ((int32_t)y < sx) + (y < x);
      h = (h ^ y) + (x >> (y & 31)) - (y << (x & 31));
    }
    h = mix(h, x ^ y);
  }
  return h;
}

/*
 * --- 2. M extension, including the cases C leaves undefined --------------
 * Division and remainder go through inline asm so that x/0 and
 * INT32_MIN/-1 give the RISC-V results (spec 13.2) instead of C's UB.
 */
static inline int32_t rv_div(int32_t a, int32_t b) {
  int32_t r;
  __asm__ volatile("div %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline uint32_t rv_divu(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm__ volatile("divu %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline int32_t rv_rem(int32_t a, int32_t b) {
  int32_t r;
  __asm__ volatile("rem %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline uint32_t rv_remu(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm__ volatile("remu %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline uint32_t rv_mulh(int32_t a, int32_t b) {
  uint32_t r;
  __asm__ volatile("mulh %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline uint32_t rv_mulhu(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm__ volatile("mulhu %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline uint32_t rv_mulhsu(int32_t a, uint32_t b) {
  uint32_t r;
  __asm__ volatile("mulhsu %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

static const int32_t edge[] = {0, 1, -1, 2, -2, 7, -7, 0x7fffffff, (int32_t)0x80000000,
                               0x10000, -0x10000, 12345, -98765, 0x55555555};
#define NEDGE (sizeof edge / sizeof edge[0])

static uint32_t muldiv_pair(uint32_t h, int32_t a, int32_t b) {
  h = mix(h, (uint32_t)(a * b));
  h = mix(h, rv_mulh(a, b));
  h = mix(h, rv_mulhu((uint32_t)a, (uint32_t)b));
  h = mix(h, rv_mulhsu(a, (uint32_t)b));
  h = mix(h, (uint32_t)rv_div(a, b));
  h = mix(h, rv_divu((uint32_t)a, (uint32_t)b));
  h = mix(h, (uint32_t)rv_rem(a, b));
  h = mix(h, rv_remu((uint32_t)a, (uint32_t)b));
  return h;
}

static uint32_t sec_muldiv(uint32_t rounds, uint32_t *edge_sum) {
  uint32_t h = 2166136261u;
  for (unsigned i = 0; i < NEDGE; i++)
    for (unsigned j = 0; j < NEDGE; j++) h = muldiv_pair(h, edge[i], edge[j]);
  *edge_sum = h;
  uint32_t s = 0xdeadbeefu;
  for (uint32_t r = 0; r < rounds; r++) {
    for (uint32_t i = 0; i < 100; i++) {
      s ^= s << 13;
      s ^= s >> 17;
      s ^= s << 5;
      int32_t a = (int32_t)s, b = (int32_t)(s >> (i & 15)) | 1;
      if ((i & 31) == 7) b = 0; /* divide by zero, the defined way */
      h = muldiv_pair(h, a, b);
    }
  }
  return h;
}

/* --- 3. memory: strided walks, block copies, a sort ------------------------ */
#define MEM_WORDS 16384 /* 64 KiB per array */
static uint32_t arr_a[MEM_WORDS], arr_b[MEM_WORDS];

static void shell_sort(uint32_t *v, int n) {
  static const int gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
  for (unsigned g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
    int gap = gaps[g];
    for (int i = gap; i < n; i++) {
      uint32_t t = v[i];
      int j = i;
      for (; j >= gap && v[j - gap] > t; j -= gap) v[j] = v[j - gap];
      v[j] = t;
    }
  }
}

static uint32_t sec_memory(uint32_t rounds) {
  uint32_t h = 2166136261u, s = 0x2545f491u;
  for (uint32_t r = 0; r < rounds; r++) {
    for (int i = 0; i < MEM_WORDS; i++) {
      s = s * 1664525u + 1013904223u;
      arr_a[i] = s;
    }
    /* Strided walk touching every word once (stride is odd, size 2^k). */
    uint32_t acc = 0;
    for (uint32_t i = 0, k = 0; i < MEM_WORDS; i++, k = (k + 1031) & (MEM_WORDS - 1))
      acc += arr_a[k] ^ i;
    h = mix(h, acc);
    memcpy(arr_b, arr_a, sizeof arr_a);
    /* Byte and halfword traffic over the copy. */
    uint8_t *bytes = (uint8_t *)arr_b;
    uint16_t *halves = (uint16_t *)arr_b;
    for (int i = 0; i < MEM_WORDS; i += 4) {
      bytes[i * 4 + 1] ^= (uint8_t)i;
      halves[i * 2 + 3] += (uint16_t)(int16_t)bytes[i * 4 + 2];
    }
    int8_t sb = (int8_t)bytes[r & 1023];
    int16_t sh = (int16_t)halves[r & 511];
    h = mix(h, (uint32_t)(int32_t)sb);
    h = mix(h, (uint32_t)(int32_t)sh);
    shell_sort(arr_b, 2048);
    for (int i = 0; i < 2048; i += 64) h = mix(h, arr_b[i]);
    memmove(arr_b + 1, arr_b, 4096 * sizeof arr_b[0]);
    h = mix(h, arr_b[4096]);
  }
  return h;
}

/* --- 4. branches: a tiny stack-machine interpreter ------------------------- */
enum { OP_LI, OP_ADD, OP_MUL, OP_XOR, OP_ANDI, OP_ADDI, OP_JNZ, OP_HALT };
struct insn {
  uint8_t op, rd, ra, rb;
  int32_t imm;
};

/* acc = 0; do { acc = acc*31 ^ n; acc += n & 7; } while (--n); */
static const struct insn prog[] = {
    {OP_LI, 0, 0, 0, 0},     /* 0: r0 = 0 */
    {OP_LI, 3, 0, 0, 31},    /* 1: r3 = 31 */
    {OP_MUL, 0, 0, 3, 0},    /* 2: r0 *= r3 */
    {OP_XOR, 0, 0, 1, 0},    /* 3: r0 ^= r1 */
    {OP_ANDI, 2, 1, 0, 7},   /* 4: r2 = r1 & 7 */
    {OP_ADD, 0, 0, 2, 0},    /* 5: r0 += r2 */
    {OP_ADDI, 1, 1, 0, -1},  /* 6: r1 -= 1 */
    {OP_JNZ, 0, 1, 0, 2},    /* 7: if r1 goto 2 */
    {OP_HALT, 0, 0, 0, 0},   /* 8 */
};

static uint32_t run_vm(int32_t n) {
  int32_t r[4] = {0, n, 0, 0};
  const struct insn *pc = prog;
  for (;;) {
    const struct insn *in = pc++;
    switch (in->op) {
      case OP_LI: r[in->rd] = in->imm; break;
      case OP_ADD: r[in->rd] = r[in->ra] + r[in->rb]; break;
      case OP_MUL: r[in->rd] = r[in->ra] * r[in->rb]; break;
      case OP_XOR: r[in->rd] = r[in->ra] ^ r[in->rb]; break;
      case OP_ANDI: r[in->rd] = r[in->ra] & in->imm; break;
      case OP_ADDI: r[in->rd] = r[in->ra] + in->imm; break;
      case OP_JNZ: if (r[in->ra] != 0) pc = prog + in->imm; break;
      case OP_HALT: return (uint32_t)r[0];
      default: return 0xffffffffu;
    }
  }
}

/* A switch-free state machine: a DFA that recognises a toy token stream. */
static uint32_t run_dfa(uint32_t seed, int len) {
  uint32_t state = 0, count = 0;
  for (int i = 0; i < len; i++) {
    seed = seed * 1103515245u + 12345u;
    uint32_t c = (seed >> 16) & 7;
    if (state == 0) state = c < 3 ? 1 : (c == 7 ? 3 : 0);
    else if (state == 1) state = c < 5 ? 1 : 2;
    else if (state == 2) { count += c; state = c & 1 ? 0 : 3; }
    else state = c > 4 ? 0 : (c == 0 ? 2 : 3);
  }
  return count * 16 + state;
}

static uint32_t sec_branches(uint32_t rounds) {
  uint32_t h = 2166136261u;
  for (uint32_t r = 0; r < rounds; r++) {
    h = mix(h, run_vm((int32_t)(2000 + (r & 7))));
    h = mix(h, run_dfa(r, 4000));
  }
  return h;
}

/* --- 5. calls: recursion, function pointers, many arguments ---------------- */
static uint32_t __attribute__((noinline)) fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static uint32_t __attribute__((noinline)) ack(uint32_t m, uint32_t n) {
  if (m == 0) return n + 1;
  if (n == 0) return ack(m - 1, 1);
  return ack(m - 1, ack(m, n - 1));
}

typedef uint32_t (*op_fn)(uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t,
                          uint32_t, uint32_t, uint32_t);
static uint32_t __attribute__((noinline)) f_sum(uint32_t a, uint32_t b, uint32_t c, uint32_t d,
                                                uint32_t e, uint32_t f, uint32_t g, uint32_t h,
                                                uint32_t i, uint32_t j) {
  return a + b + c + d + e + f + g + h + i + j; /* i and j arrive on the stack */
}
static uint32_t __attribute__((noinline)) f_alt(uint32_t a, uint32_t b, uint32_t c, uint32_t d,
                                                uint32_t e, uint32_t f, uint32_t g, uint32_t h,
                                                uint32_t i, uint32_t j) {
  return a - b + c - d + e - f + g - h + i - j;
}
static op_fn volatile ops[2] = {f_sum, f_alt};

static uint32_t sec_calls(uint32_t rounds) {
  uint32_t h = 2166136261u;
  for (uint32_t r = 0; r < rounds; r++) {
    h = mix(h, fib(18 + (r & 1)));
    h = mix(h, ack(2, 200 + (r & 3)));
    for (uint32_t i = 0; i < 500; i++) h = ops[i & 1](h, i, r, 1, 2, 3, 4, 5, 6, i ^ r);
  }
  return h;
}

#ifdef BENCH_TIMER_HZ
/*
 * bench-timer: the same work under a periodic machine timer interrupt, the load
 * DESIGN's FT-overhead figure is measured on. The tick count depends on host
 * speed, so it is never printed: the output stays checkable against bench.
 */
static volatile uint32_t ticks;
static uint64_t next_tick;

static void tick(struct trap_frame *f) {
  if (f->mcause == (MCAUSE_INTERRUPT | IRQ_M_TIMER)) {
    ticks++;
    next_tick += 10000000u / BENCH_TIMER_HZ;
    mtimecmp_write(next_tick);
  } else {
    trap_unexpected(f);
  }
}

static void start_timer(void) {
  trap_install(tick, 0);
  next_tick = mtime_read() + 10000000u / BENCH_TIMER_HZ;
  mtimecmp_write(next_tick);
  csr_set(mie, MIE_MTIE);
  irq_enable();
}
#endif

int main(void) {
  const uint32_t s = BENCH_SCALE;
#ifdef BENCH_TIMER_HZ
  start_timer();
#endif
  uint32_t edge_sum = 0;
  uint32_t c1 = sec_arith(175 * s);
  uint32_t c2 = sec_muldiv(70 * s, &edge_sum);
  uint32_t c3 = sec_memory(3 * s);
  uint32_t c4 = sec_branches(17 * s);
  uint32_t c5 = sec_calls(7 * s);
  printf("bench scale %lu\n", (unsigned long)s);
  printf("arith    %08lx\n", (unsigned long)c1);
  printf("muldiv   %08lx (edge cases %08lx)\n", (unsigned long)c2, (unsigned long)edge_sum);
  printf("memory   %08lx\n", (unsigned long)c3);
  printf("branches %08lx\n", (unsigned long)c4);
  printf("calls    %08lx\n", (unsigned long)c5);
  uint32_t total = mix(mix(mix(mix(mix(2166136261u, c1), c2), c3), c4), c5);
  printf("total    %08lx\n", (unsigned long)total);
#ifdef BENCH_REPORT_INSTRET
  /* Measurement builds only (QEMU -icount shift=0): never in a golden. */
  printf("instret  %lu\n", (unsigned long)csr_read(minstret));
#endif
  return 0;
}
