#!/bin/sh
# Runs one guest image on QEMU the way goldens are made and checked:
# the console is the UART on stdio and nothing else (no monitor, no display).
#
# The CPU is configured down to what ftvm implements (RV32IM + Zicsr + Zkr,
# M-mode only), so misa and illegal-instruction behaviour match ftvm.
# Usage: guests/qemu.sh guest.elf [extra qemu args...]
set -eu
elf=$1
shift
exec qemu-system-riscv32 -machine virt -bios none \
  -cpu rv32,c=false,a=false,f=false,d=false,s=false,u=false,h=false,v=false,mmu=false,zkr=true,sstc=false,pmp=false,debug=false,pmu-num=0 \
  -m 128M -smp 1 -display none -monitor none -serial stdio -nodefaults \
  -kernel "$elf" "$@"
