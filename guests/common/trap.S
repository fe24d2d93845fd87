/*
 * Trap entry for direct and vectored mtvec. Saves every register into a
 * struct trap_frame on the current stack, calls trap_dispatch(frame), then
 * restores registers and mepc (which the handler may have moved) and mrets.
 *
 * NOTE: mtvec MODE=1 (vectored) sends interrupts to BASE + 4*cause and
 * exceptions to BASE, so the table's slots are one jump each
 * (privileged spec 3.1.7); each slot's stub records its index in x[0].
 */
#define FRAME 144      /* 36 words: x0..x31, mepc, mcause, mtval, mstatus */

	.section .text.trap, "ax"
	.option norvc

	.macro SAVE_REST
	sw x1, 4(sp)
	/* x2 (sp) is saved as the pre-trap value below */
	sw x3, 12(sp)
	sw x4, 16(sp)
	/* x5 (t0) saved by the caller of this macro */
	sw x6, 24(sp)
	sw x7, 28(sp)
	sw x8, 32(sp)
	sw x9, 36(sp)
	sw x10, 40(sp)
	sw x11, 44(sp)
	sw x12, 48(sp)
	sw x13, 52(sp)
	sw x14, 56(sp)
	sw x15, 60(sp)
	sw x16, 64(sp)
	sw x17, 68(sp)
	sw x18, 72(sp)
	sw x19, 76(sp)
	sw x20, 80(sp)
	sw x21, 84(sp)
	sw x22, 88(sp)
	sw x23, 92(sp)
	sw x24, 96(sp)
	sw x25, 100(sp)
	sw x26, 104(sp)
	sw x27, 108(sp)
	sw x28, 112(sp)
	sw x29, 116(sp)
	sw x30, 120(sp)
	sw x31, 124(sp)
	.endm

	.balign 64
	.globl trap_entry_direct
trap_entry_direct:
	addi sp, sp, -FRAME
	sw t0, 20(sp)
	li t0, -1
	j trap_common

	/* Table base must be 64-byte aligned for vectored mode on some cores;
	 * 256 is generous and harmless. */
	.balign 256
	.globl trap_vector_table
trap_vector_table:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
	j trap_vec_\n
	.endr

	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
trap_vec_\n:
	addi sp, sp, -FRAME
	sw t0, 20(sp)
	li t0, \n
	j trap_common
	.endr

trap_common:
	sw t0, 0(sp)
	SAVE_REST
	addi t0, sp, FRAME
	sw t0, 8(sp)
	csrr t0, mepc
	sw t0, 128(sp)
	csrr t0, mcause
	sw t0, 132(sp)
	csrr t0, mtval
	sw t0, 136(sp)
	csrr t0, mstatus
	sw t0, 140(sp)
	mv a0, sp
	call trap_dispatch
	lw t0, 128(sp)
	csrw mepc, t0
	lw x1, 4(sp)
	lw x3, 12(sp)
	lw x4, 16(sp)
	lw x5, 20(sp)
	lw x6, 24(sp)
	lw x7, 28(sp)
	lw x8, 32(sp)
	lw x9, 36(sp)
	lw x10, 40(sp)
	lw x11, 44(sp)
	lw x12, 48(sp)
	lw x13, 52(sp)
	lw x14, 56(sp)
	lw x15, 60(sp)
	lw x16, 64(sp)
	lw x17, 68(sp)
	lw x18, 72(sp)
	lw x19, 76(sp)
	lw x20, 80(sp)
	lw x21, 84(sp)
	lw x22, 88(sp)
	lw x23, 92(sp)
	lw x24, 96(sp)
	lw x25, 100(sp)
	lw x26, 104(sp)
	lw x27, 108(sp)
	lw x28, 112(sp)
	lw x29, 116(sp)
	lw x30, 120(sp)
	lw x31, 124(sp)
	addi sp, sp, FRAME
	mret
