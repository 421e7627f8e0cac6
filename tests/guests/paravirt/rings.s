; The console and block rings (docs/paravirt-abi.md §9): output and input bytes through the console ring, a batch of block requests, two served and six refused.
;
; Console: "ring out\n" into the output ring, one send; then the input the VMM put in the ring
; before the first instruction, echoed through the output ring.  Block: eight requests in one
; batch — a read of sector 1, a write of sector 3, then one refusal of each kind — and one send.
; Recorded: out_cons after each send, in_prod, rsp_prod, each response's id and status, the
; first quadword the read brought in.
.include "lib/pv.s"

.equ READ_BUFFER, 0x50000
.equ WRITE_BUFFER, 0x51000

.org 0x1000
_start:
        li      sp, STACK_TOP
        results_begin
        mov     r10, r1
        ld      r11, [r10 + START_MEM_BASE]
        ld      r12, [r10 + START_CONSOLE_RING]
        ld      r14, [r10 + START_BLOCK_RING]

        ; console output: the bytes, out_prod once, a send
        la      r3, message
        li      r4, 0
copy:   add     r5, r3, r4
        lbu     r5, [r5]
        add     r6, r12, r4
        sb      r5, [r6 + CONS_OUT]
        addi    r4, r4, 1
        li      r5, 9
        bltu    r4, r5, copy
        sd      r4, [r12 + CONS_OUT_PROD]
        li      r1, PORT_CONSOLE
        hypercall HYPERCALL_EVTCHN_SEND
        record  r1
        ld      r3, [r12 + CONS_OUT_CONS]
        record  r3                      ; 9: consumed

        ; console input, echoed: in_prod bytes from in_cons
        ld      r3, [r12 + CONS_IN_PROD]
        record  r3
        li      r4, 0
        ld      r5, [r12 + CONS_OUT_PROD]
echo:   beq     r4, r3, echoed
        add     r6, r12, r4
        lbu     r6, [r6 + CONS_IN]
        andi    r7, r5, CONS_OUT_SIZE - 1
        add     r7, r7, r12
        sb      r6, [r7 + CONS_OUT]
        addi    r5, r5, 1
        addi    r4, r4, 1
        jmp     echo
echoed: sd      r4, [r12 + CONS_IN_CONS]
        sd      r5, [r12 + CONS_OUT_PROD]
        li      r1, PORT_CONSOLE
        hypercall HYPERCALL_EVTCHN_SEND
        ld      r3, [r12 + CONS_OUT_CONS]
        record  r3

        ; the block batch: id = the slot; op, count, sector, buffer (machine)
        li      r3, 0x77                ; the write's data: 512 bytes of 0x77
        li      r4, WRITE_BUFFER
        li      r5, 512
fill:   sb      r3, [r4]
        addi    r4, r4, 1
        addi    r5, r5, -1
        bnez    r5, fill
        li      r5, READ_BUFFER
        add     r5, r5, r11
        li      r6, WRITE_BUFFER
        add     r6, r6, r11
        ld      r7, [r10 + START_MEM_SIZE]
        add     r7, r7, r11              ; just past the guest's memory
        ld      r8, [r10 + START_PT_BASE]
        add     r8, r8, r11              ; the bootstrap L4, a pinned table
        li      r1, 0
        li      r2, BLK_OP_READ
        li      r3, 1
        li      r4, 1
        call    put                     ; 0: read sector 1: done
        li      r2, BLK_OP_WRITE
        li      r4, 3
        mov     r5, r6
        call    put                     ; 1: write sector 3: done
        li      r2, 7
        call    put                     ; 2: op 7: EINVAL
        li      r2, BLK_OP_READ
        li      r3, 0
        call    put                     ; 3: no sectors: EINVAL
        li      r3, BLK_MAX_SECTORS + 1
        call    put                     ; 4: 129 sectors: E2BIG
        li      r3, 2
        li      r4, 15
        call    put                     ; 5: sectors 15-16 of 16: ERANGE
        li      r3, 1
        li      r4, 0
        mov     r5, r7
        call    put                     ; 6: outside the guest: ENOTOWNED
        mov     r5, r8
        call    put                     ; 7: into a page-table page: EWRITABLE
        sd      r1, [r14 + BLK_REQ_PROD]
        li      r1, PORT_BLOCK
        hypercall HYPERCALL_EVTCHN_SEND
        record  r1
        ld      r3, [r14 + BLK_RSP_PROD]
        record  r3
        li      r4, 0
        addi    r5, r14, BLK_RESPONSES
responses:
        ld      r6, [r5 + BLK_RSP_ID]
        record  r6
        ld      r6, [r5 + BLK_RSP_STATUS]
        record  r6
        addi    r5, r5, BLK_RSP_SIZE
        addi    r4, r4, 1
        bne     r4, r3, responses
        li      r3, READ_BUFFER
        ld      r3, [r3]
        record  r3
        results_end

; put: block request r1 (its slot and id): op r2, count r3, sector r4, buffer r5; r1 += 1.
put:    shli    r9, r1, 5
        add     r9, r9, r14
        sd      r1, [r9 + BLK_REQUESTS + BLK_REQ_ID]
        sw      r2, [r9 + BLK_REQUESTS + BLK_REQ_OP]
        sw      r3, [r9 + BLK_REQUESTS + BLK_REQ_COUNT]
        sd      r4, [r9 + BLK_REQUESTS + BLK_REQ_SECTOR]
        sd      r5, [r9 + BLK_REQUESTS + BLK_REQ_BUFFER]
        addi    r1, r1, 1
        ret

message: .ascii "ring out\n"

.include "lib/end.s"
