/*
 * The QEMU `virt` platform as ftvm's guests see it (DESIGN.md section 1).
 * Every guest includes this one header; addresses appear nowhere else.
 */
#ifndef FTVM_PLATFORM_H
#define FTVM_PLATFORM_H

#include <stdint.h>

#define SIFIVE_TEST_BASE 0x00100000u
#define RTC_BASE 0x00101000u
#define CLINT_BASE 0x02000000u
#define CLINT_MSIP (CLINT_BASE + 0x0000u)
#define CLINT_MTIMECMP (CLINT_BASE + 0x4000u)
#define CLINT_MTIME (CLINT_BASE + 0xBFF8u)
#define PLIC_BASE 0x0c000000u
#define UART_BASE 0x10000000u
#define UART_IRQ 10
#define VIRTIO_MMIO_BASE(n) (0x10001000u + (uint32_t)(n) * 0x1000u)
#define VIRTIO_MMIO_SLOTS 8

/* mtime ticks at 10 MHz on `virt`. */
#define MTIME_HZ 10000000u

#define MMIO32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
#define MMIO8(addr) (*(volatile uint8_t *)(uintptr_t)(addr))

/* CSR numbers used by name below; `seed` is Zkr (0x015). */
#define CSR_SEED 0x015

#define csr_read(csr)                                       \
  ({                                                        \
    uint32_t __v;                                           \
    __asm__ volatile("csrr %0, " #csr : "=r"(__v)::"memory"); \
    __v;                                                    \
  })
#define csr_write(csr, val) \
  __asm__ volatile("csrw " #csr ", %0" ::"rK"((uint32_t)(val)) : "memory")
#define csr_set(csr, bits) \
  __asm__ volatile("csrs " #csr ", %0" ::"rK"((uint32_t)(bits)) : "memory")
#define csr_clear(csr, bits) \
  __asm__ volatile("csrc " #csr ", %0" ::"rK"((uint32_t)(bits)) : "memory")
#define csr_swap(csr, val)                                                   \
  ({                                                                         \
    uint32_t __v;                                                            \
    __asm__ volatile("csrrw %0, " #csr ", %1" : "=r"(__v) : "rK"((uint32_t)(val)) \
                     : "memory");                                            \
    __v;                                                                     \
  })

/* Zkr: `seed` may only be accessed with a read-write instruction (csrrw). */
static inline uint32_t seed_read(void) {
  uint32_t v;
  __asm__ volatile("csrrw %0, 0x015, x0" : "=r"(v)::"memory");
  return v;
}
#define SEED_OPST(v) ((v) >> 30)
#define SEED_OPST_ES16 2u

#define MSTATUS_MIE (1u << 3)
#define MSTATUS_MPIE (1u << 7)
#define MSTATUS_MPP (3u << 11)
#define MIE_MSIE (1u << 3)
#define MIE_MTIE (1u << 7)
#define MIE_MEIE (1u << 11)
#define MIP_MSIP (1u << 3)
#define MIP_MTIP (1u << 7)
#define MIP_MEIP (1u << 11)

#define MCAUSE_INTERRUPT 0x80000000u
#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS 1
#define CAUSE_ILLEGAL_INSTRUCTION 2
#define CAUSE_BREAKPOINT 3
#define CAUSE_MISALIGNED_LOAD 4
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS 7
#define CAUSE_ECALL_M 11
#define IRQ_M_SOFT 3
#define IRQ_M_TIMER 7
#define IRQ_M_EXT 11

static inline void irq_enable(void) { csr_set(mstatus, MSTATUS_MIE); }
static inline void irq_disable(void) { csr_clear(mstatus, MSTATUS_MIE); }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }

/*
 * mtime is 64 bits read as two halves; re-read the high half so a carry
 * between the two loads cannot produce a value off by 2^32.
 */
static inline uint64_t mtime_read(void) {
  uint32_t hi, lo, hi2;
  do {
    hi = MMIO32(CLINT_MTIME + 4);
    lo = MMIO32(CLINT_MTIME);
    hi2 = MMIO32(CLINT_MTIME + 4);
  } while (hi != hi2);
  return ((uint64_t)hi << 32) | lo;
}

/* The `time` CSR pair, read the same carry-safe way. */
static inline uint64_t rdtime64(void) {
  uint32_t hi, lo, hi2;
  do {
    hi = csr_read(timeh);
    lo = csr_read(time);
    hi2 = csr_read(timeh);
  } while (hi != hi2);
  return ((uint64_t)hi << 32) | lo;
}

/*
 * Write the high half to all-ones first so that no intermediate value is
 * smaller than both the old and the new compare value (RISC-V privileged
 * spec, 3.2.1 sample code for RV32 mtimecmp).
 */
static inline void mtimecmp_write(uint64_t t) {
  MMIO32(CLINT_MTIMECMP + 4) = 0xffffffffu;
  MMIO32(CLINT_MTIMECMP) = (uint32_t)t;
  MMIO32(CLINT_MTIMECMP + 4) = (uint32_t)(t >> 32);
}

static inline void msip_write(uint32_t v) { MMIO32(CLINT_MSIP) = v; }

static inline uint64_t rtc_read_ns(void) {
  uint32_t lo = MMIO32(RTC_BASE + 0); /* reading TIME_LOW latches TIME_HIGH */
  uint32_t hi = MMIO32(RTC_BASE + 4);
  return ((uint64_t)hi << 32) | lo;
}

/* Console: 16550 at UART_BASE. */
void uart_init(void);
void uart_putc(char c);
int uart_getc(void); /* -1 when no byte is waiting */
void uart_puts(const char *s);

/* Power off through sifive_test: 0 -> PASS (0x5555), else FAIL with code. */
void poweroff(int code) __attribute__((noreturn));

/*
 * Trap frame built by trap.S. x[0] holds the vector slot taken in vectored
 * mode (or -1 in direct mode), since x0 itself needs no saving.
 * A handler may change x[] and mepc; they are restored before mret.
 */
struct trap_frame {
  uint32_t x[32];
  uint32_t mepc;
  uint32_t mcause;
  uint32_t mtval;
  uint32_t mstatus;
};

typedef void (*trap_handler_t)(struct trap_frame *f);

/* Install `h` for every trap. vectored != 0 selects mtvec MODE=1. */
void trap_install(trap_handler_t h, int vectored);

/* Default handler: prints the unexpected trap and exits with code 99. */
void trap_unexpected(struct trap_frame *f);

#endif
