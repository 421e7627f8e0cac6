; p64os, the whole image: the kernel in the low 2 MiB, then every user program at USER_TEXT.
;
; One image serves every workload (README, "Boot parameters"): process 1 (user/init.s) reads
; `name N` from the console and runs that workload.  The order below is the README's reading
; order.  All labels share one name space, so each file prefixes its private labels.
.include "include/p64.s"
.include "include/abi.s"
.include "include/arch.s"

.entry boot
.org 0x1000
.include "kernel/boot.s"
.include "kernel/trap.s"
.include "kernel/kalloc.s"
.include "kernel/vm.s"
.include "kernel/proc.s"
.include "kernel/syscall.s"
.include "kernel/file.s"
.include "kernel/console.s"
.include "kernel/disk.s"
.include "kernel/fs.s"
.include "kernel/klib.s"
        .align  8
kernel_end:                            ; must stay below KERNEL_LIMIT (boot.s)

.org USER_TEXT
.include "user/ulib.s"
.include "user/init.s"
.include "user/ktest.s"
.include "user/forkwait.s"
.include "user/compute.s"
.include "user/compile.s"
.include "user/mmu.s"
.include "user/diskio.s"
.include "user/fstest.s"
user_end:                              ; must stay below USER_TEXT_END
