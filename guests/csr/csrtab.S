/*
 * Two tables of 4096 two-instruction stubs, one per CSR number, so that the
 * map in csr.c can try every number with a fixed instruction word (CSR
 * numbers are immediates: a loop cannot vary them without rewriting code).
 *   csr_read_tab[n]:  csrrs a0, n, x0   ; ret   (reads, never writes)
 *   csr_write_tab[n]: csrrw a0, n, a1   ; ret   (always writes a1)
 * Each stub is 8 bytes: call csr_read_tab + 8*n. A trap handler that moves
 * mepc past the CSR instruction lands on the ret.
 */
	.section .text.csrtab, "ax"
	.option norvc

	.macro TABLE name, insn
	.globl \name
	.balign 8
\name:
	.set csrno, 0
	.rept 4096
	\insn
	ret
	.set csrno, csrno + 1
	.endr
	.endm

	TABLE csr_read_tab, "csrrs a0, csrno, x0"
	TABLE csr_write_tab, "csrrw a0, csrno, a1"
