/*
 * Runtime glue between picolibc and the `virt` platform: console through
 * the 16550, exit through sifive_test, and trap dispatch.
 */
#include <stdio.h>
#include <stdlib.h>

#include "platform.h"

#define UART_THR 0
#define UART_RBR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_LSR 5
#define LSR_DR 0x01
#define LSR_THRE 0x20

void uart_init(void) {
  MMIO8(UART_BASE + UART_LCR) = 0x03; /* 8N1, DLAB off */
  MMIO8(UART_BASE + UART_FCR) = 0x01; /* FIFOs on */
  MMIO8(UART_BASE + UART_IER) = 0x00; /* polled unless a guest opts in */
}

void uart_putc(char c) {
  while (!(MMIO8(UART_BASE + UART_LSR) & LSR_THRE)) {
  }
  MMIO8(UART_BASE + UART_THR) = (uint8_t)c;
}

int uart_getc(void) {
  if (!(MMIO8(UART_BASE + UART_LSR) & LSR_DR)) return -1;
  return MMIO8(UART_BASE + UART_RBR);
}

void uart_puts(const char *s) {
  while (*s) uart_putc(*s++);
}

static int stdio_put(char c, FILE *f) {
  (void)f;
  uart_putc(c);
  return (unsigned char)c;
}

static int stdio_get(FILE *f) {
  (void)f;
  int c;
  while ((c = uart_getc()) < 0) {
  }
  return c;
}

static FILE console = FDEV_SETUP_STREAM(stdio_put, stdio_get, NULL, _FDEV_SETUP_RW);
FILE *const stdin = &console;
FILE *const stdout = &console;
FILE *const stderr = &console;

void poweroff(int code) {
  MMIO32(SIFIVE_TEST_BASE) = code == 0 ? 0x5555u : (((uint32_t)code << 16) | 0x3333u);
  for (;;) {
  }
}

/* picolibc's exit() runs atexit handlers and then calls _exit. */
void _exit(int code) { poweroff(code); }

extern char trap_entry_direct[];
extern char trap_vector_table[];
static trap_handler_t current_handler = trap_unexpected;

void trap_install(trap_handler_t h, int vectored) {
  current_handler = h ? h : trap_unexpected;
  uint32_t base = vectored ? (uint32_t)(uintptr_t)trap_vector_table
                           : (uint32_t)(uintptr_t)trap_entry_direct;
  csr_write(mtvec, base | (vectored ? 1u : 0u));
}

void trap_dispatch(struct trap_frame *f) { current_handler(f); }

void trap_unexpected(struct trap_frame *f) {
  printf("unexpected trap: mcause=%08lx mepc=%08lx mtval=%08lx\n",
         (unsigned long)f->mcause, (unsigned long)f->mepc, (unsigned long)f->mtval);
  poweroff(99);
}

/*
 * Runs before main (picolibc's crt0 calls the init array), so every guest
 * has a console and a trap vector that reports instead of looping.
 */
static void __attribute__((constructor)) rt_init(void) {
  uart_init();
  trap_install(trap_unexpected, 0);
}
