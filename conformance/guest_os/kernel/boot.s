; p64os boot: the kernel's memory layout, then the order in which the subsystems start.
;
; The image's entry is `boot`, at CPL 0 with paging off and interrupts off (architecture.md
; §2: the reset state).  Kernel addresses are physical addresses: once paging is on, the
; kernel's tables map all of RAM one to one (README, memory map), so nothing moves.

.equ OS_MEMORY, 0x1000000              ; 16 MiB of RAM (README)
.equ TIMER_QUANTUM, 20000              ; ticks between two timer interrupts: the time slice

; The low 2 MiB, kernel-only.  The image (code and initialized data) starts at 0x1000 and
; must end below KERNEL_LIMIT; the regions above are not part of the image and are cleared
; at boot.
.equ KERNEL_LIMIT, 0x80000
.equ IDT_BASE, 0x80000                 ; 256 gates of 16 bytes (§6.2)
.equ KPML4, 0x81000                    ; the kernel's page tables (vm.s)
.equ KPDPT, 0x82000
.equ KPD, 0x83000
.equ UTEXT_PT, 0x84000                 ; the 4 KiB pages of the shared user text
.equ REFCNT, 0x85000                   ; one quadword per frame of RAM (kalloc.s): 32 KiB
.equ PROCS, 0x90000                    ; the process table (proc.s): NPROC * PROC_SIZE
.equ FILES, 0x98000                    ; the open-file table (file.s)
.equ CONS_BUF, 0x9c000                 ; the console's input ring (console.s)
.equ BSS_START, 0x80000                ; cleared at boot: tables and buffers above
.equ BSS_END, 0x9e000
.equ BOOT_STACK_TOP, 0xa0000           ; the boot stack, then the scheduler's (8 KiB)
.equ KSTACKS, 0x100000                 ; kernel stacks: NPROC * KSTACK_SIZE
.equ FS_AREA, 0x180000                 ; 0x180000-0x1fffff: free for the disk driver and file system
.equ FS_AREA_END, 0x200000
.equ USER_TEXT, 0x200000               ; user programs (os.s: .org USER_TEXT)
.equ USER_TEXT_END, 0x400000
.equ FREE_START, 0x400000              ; frames handed out by kalloc

boot:
        li      sp, BOOT_STACK_TOP
        arch_boot
        li      r1, BSS_START          ; RAM is zero at reset, but a kernel that relies on it
        li      r2, 0                  ; breaks on a warm restart: clear the tables ourselves
        li      r3, BSS_END - BSS_START
        call    kmemset
        call    kvm_init               ; paging on, kernel tables (vm.s)
        call    trap_init              ; IDT, PIC, timer (trap.s)
        call    kinit                  ; the free frames (kalloc.s)
        call    console_init
        call    disk_init
        call    fs_init
        call    userinit               ; process 1 (proc.s)
        jmp     scheduler              ; never returns
