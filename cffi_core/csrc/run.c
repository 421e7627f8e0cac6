/* The interpreter: p64_run with the instruction boundary of §6.5, and the computed-goto loop
 * over predecoded pages that holds the body of every instruction of the table (§3-§6). */
#include <stdio.h>

#include "core.h"

enum { BLK_BUDGET, BLK_BOUNDARY, BLK_FAULT, BLK_EXIT, BLK_VMEXIT };

/* ---- the vocabulary of instruction bodies ---- */

#define OP(NAME) L_##NAME:
/* A record's register fields (rd, rs1, rs2, aux) and its immediate in one load: a handler picks
 * them out of one host register rather than loading each, which measured 5-14% faster on the
 * loops of benchmarks/test_core_speed.py (loads, not arithmetic, bound the handlers). */
_Static_assert(offsetof(struct dinsn, rs1) == offsetof(struct dinsn, rd) + 1 &&
                   offsetof(struct dinsn, rs2) == offsetof(struct dinsn, rd) + 2 &&
                   offsetof(struct dinsn, aux) == offsetof(struct dinsn, rd) + 3 &&
                   offsetof(struct dinsn, imm) == offsetof(struct dinsn, rd) + 4,
               "rd, rs1, rs2, aux and imm are one little-endian quadword");
static inline uint64_t reg_fields(const struct dinsn *d)
{
    uint64_t w;
    memcpy(&w, (const unsigned char *)d + offsetof(struct dinsn, rd), 8);
    return w;
}
#define RD r[reg_fields(ip) & 0xff]
#define RS1 r[(reg_fields(ip) >> 8) & 0xff]
#define RS2 r[(reg_fields(ip) >> 16) & 0xff]
#define IMM32 ((int32_t)((int64_t)reg_fields(ip) >> 32)) /* ip->imm, from the same load */
#define IMM ((uint64_t)((int64_t)reg_fields(ip) >> 32))
#define CUR_VA m->fetch_va /* the page fetch is on; in memory, to spare a register */
#define CUR_DP m->fetch_dp
#define PC (CUR_VA + (uint64_t)(ip - CUR_DP) * 4) /* the pc of the instruction at ip */
#define NOW() (m->clock + (uint64_t)(m->block_n0 - n - 1)) /* ticks before this one (§9) */

/* The budget (§9) is charged a run at a time: NEXT, entering the word at ip, takes the ticks of
 * its whole straight run (struct dinsn.run, core.h P64_STRAIGHT), so the straight instructions
 * inside it go on (GO_ON) without a check, and n is the budget left after the run's last word.
 * A run the budget cannot cover ends in the scratch records (short_run).  A straight
 * instruction that leaves through a slow access first settles n to the ticks spent through its
 * own word (SETTLE), since the access may re-decode the words after it (§15) and every exit of
 * the block reads n as the ticks spent; it then enters the next word again (resync).  Any other
 * word ends its run (run is 1): where it runs, n is exact. */
#define NEXT()                                                                                     \
    do {                                                                                           \
        if (UNLIKELY((n -= ip->run) < 0))                                                          \
            goto short_run;                                                                        \
        goto *ip->h;                                                                               \
    } while (0)
#define NEXT_SEQ() do { ip++; NEXT(); } while (0)
#define SET_RD(v) do { RD = (v); NEXT_SEQ(); } while (0)
#define GO_ON() do { ip++; goto *ip->h; } while (0) /* a straight word: the next is charged */
#define SET_RD_ON(v) do { RD = (v); GO_ON(); } while (0)
#define SETTLE() (n += (int64_t)ip->run - 1) /* n as if the run had been charged through ip */
/* In-page (§8.2): imm is the offset of the target's record in bytes (decode.c).  The last taken
 * backward branch (a loop's), its target, and the target's handler and run are kept in host
 * registers (bt_from, bt_to, bt_h, bt_run): taken again, it charges and jumps without loading
 * anything, so a loop's iterations do not wait on those loads, which bound the interpreter
 * more than its instruction count.  Forward branches leave the entry alone.  Decoded records
 * change, and decoded pages are freed, only inside a call the block makes that may write memory
 * or decode a page (a slow data access, which may store into code or set accessed bits in it,
 * and fetch_page, §15): each such call forgets the entry (CODE_MAY_CHANGE), so the fast path
 * checks nothing else. */
#define CODE_MAY_CHANGE() (bt_from = NULL)
#define SKIP(bytes) (ip = (struct dinsn *)(void *)((char *)ip + (bytes)))
#define TAKEN_NEXT()                                                                               \
    do {                                                                                           \
        if (LIKELY(ip == bt_from)) {                                                               \
            ip = bt_to;                                                                            \
            if (UNLIKELY((n -= bt_run) < 0))                                                       \
                goto short_run;                                                                    \
            goto *bt_h;                                                                            \
        }                                                                                          \
        struct dinsn *from_ = ip;                                                                  \
        int32_t d_ = ip->imm;                                                                      \
        SKIP(d_);                                                                                  \
        if (UNLIKELY(m->jit != NULL) && ip->xl == 0) { /* xl: translate.c mark */                \
            mark_from = from_, mark_back = d_ < 0;                                                 \
            goto mark_target;                                                                      \
        }                                                                                          \
        if (d_ < 0)                                                                                \
            bt_from = from_, bt_to = ip, bt_h = ip->h, bt_run = ip->run;                           \
        NEXT();                                                                                    \
    } while (0)
#define BRANCH(cond)                                                                               \
    do {                                                                                           \
        if (cond)                                                                                  \
            TAKEN_NEXT();                                                                          \
        NEXT_SEQ();                                                                                \
    } while (0)
#define GO(t) do { uint64_t go_ = (t); CUR_VA = go_; CUR_DP = ip = &m->stub; } while (0) /* fetch enters t */
/* A control transfer: the next tick fetches at t, entering its page through the exec fast array
 * (an ITLB hit, §8.2) or, failing that, through enter_slow. */
#define JUMP(t)                                                                                    \
    do {                                                                                           \
        uint64_t j_ = (t);                                                                         \
        const struct exec_entry *x_ = &fs->ex[(j_ >> PAGE_SHIFT) & FAST_MASK];                     \
        GO(j_);                                                                                    \
        if (UNLIKELY(n < 1))                                                                       \
            goto budget_out;                                                                       \
        if (UNLIKELY(x_->tag != (j_ & (PAGE_MASK | 3))))                                           \
            goto enter_slow;                                                                       \
        m->block_ihits++;                                                                          \
        CUR_VA = j_ & PAGE_MASK, CUR_DP = x_->dp;                                                  \
        ip = x_->dp + ((j_ & PAGE_OFFSET) >> 2);                                                   \
        NEXT();                                                                                    \
    } while (0)
#define RAISE(v) do { set_fault(m, v, 0, 0, 0); goto fault; } while (0)
#define RAISE_GP0() do { set_fault(m, V_GP, 1, 0, 0); goto fault; } while (0)
#define REQUIRE_PRIV(opcode)                                                                       \
    do {                                                                                           \
        unsigned v_ = privilege_fault(m, opcode);                                                  \
        if (UNLIKELY(v_)) {                                                                        \
            set_fault(m, v_, v_ == V_GP, 0, 0);                                                    \
            goto fault;                                                                            \
        }                                                                                          \
    } while (0)
#define END_BLOCK() goto boundary /* the boundary has to look again (§6.5) */
#define EXIT(why) do { m->exit.reason = (why); goto exit_out; } while (0)
/* §13: a system-group instruction retires here (after every check that could fault or exit). */
#define RETIRED(NAME) (m->ctr.insn_system[P64_OP_##NAME - P64_OP_SYSTEM_FIRST]++)

/* Guest mode (docs/vmx.md V.3): an instruction that exits does so before it executes. */
#define GUEST (UNLIKELY(m->guest))
#define INSN_WORD() rd32(m->mem + (((const struct dpage *)(const void *)CUR_DP)->ppn << PAGE_SHIFT) + (uint64_t)(ip - CUR_DP) * 4)
#define VM_EXIT(reason, qual)                                                                      \
    do {                                                                                           \
        vmx_exit(m, (reason), (qual));                                                             \
        m->vmx.x.insn_word = INSN_WORD();                                                          \
        m->vmx.x.insn_len = 4;                                                                     \
        goto vm_exit_out;                                                                          \
    } while (0)
#define EXITS(b) proc(m, P64_PROC_##b)
#define REG(i) ((uint64_t)((i) & 15) << 8) /* the register field of a qualification (V.5) */

/* Data accesses: the fast arrays, else the slow path of §5.3 (which counts its own TLB use). */
#define LOAD(T, addr, out) LOAD_NOTE(T, addr, out, (void)0)
#define LOAD_NOTE(T, addr, out, slow) /* slow: a statement run before the slow path */       \
    do {                                                                                           \
        const struct fast_entry *e_ = &fs->rd[((addr) >> PAGE_SHIFT) & FAST_MASK];                 \
        if (LIKELY(e_->tag == ((addr) & (PAGE_MASK | (sizeof(T) - 1))))) {                         \
            memcpy(&(out), (const void *)(e_->addend + (addr)), sizeof(T));                        \
            hits++;                                                                                \
        } else {                                                                                   \
            uint64_t s_;                                                                           \
            slow;                                                                                  \
            SETTLE();                                                                              \
            CODE_MAY_CHANGE();                                                                     \
            if (UNLIKELY(!load_slow(m, (addr), sizeof(T), cpl, &s_)))                              \
                goto fault;                                                                        \
            (out) = (T)s_;                                                                         \
        }                                                                                          \
    } while (0)
#define STORE(T, addr, value) STORE_NOTE(T, addr, value, (void)0)
#define STORE_NOTE(T, addr, value, slow)                                                   \
    do {                                                                                           \
        const struct fast_entry *e_ = &fs->wr[((addr) >> PAGE_SHIFT) & FAST_MASK];                 \
        T w_ = (T)(value);                                                                         \
        if (LIKELY(e_->tag == ((addr) & (PAGE_MASK | (sizeof(T) - 1))))) {                         \
            memcpy((void *)(e_->addend + (addr)), &w_, sizeof(T));                                 \
            hits++;                                                                                \
        } else {                                                                                   \
            slow;                                                                                  \
            SETTLE();                                                                              \
            CODE_MAY_CHANGE();                                                                     \
            if (UNLIKELY(!store_slow(m, (addr), sizeof(T), cpl, (uint64_t)w_)))                    \
                goto fault;                                                                        \
        }                                                                                          \
    } while (0)
/* ldgs/sdgs/jgs (§5.4, the host segment): the offset checked against MSR_GSLIMIT, then the linear
 * address MSR_GSBASE + offset through the GS fast arrays, else the slow path without the
 * segment limit.  Host class (§4.2): #GP(0) above CPL 1, checked here rather than through
 * privilege_fault because these run in the hot path of a VMM's translated code (the check
 * after this file's labels keeps the table saying so); guest mode has no GS (#UD, vmx.md V.2). */
#define GS_ADDRESS(out)                                                                            \
    do {                                                                                           \
        if (UNLIKELY(cpl > 1))                                                                     \
            RAISE_GP0();                                                                           \
        if (GUEST)                                                                                 \
            RAISE(V_UD);                                                                           \
        uint64_t o_ = RS1 + IMM;                                                                   \
        if (UNLIKELY(gs_beyond_limit(m, o_)))                                                      \
            RAISE_GP0();                                                                           \
        (out) = m->cpu.gsbase + o_;                                                                \
    } while (0)
#define GS_LOAD(addr, out)                                                                         \
    do {                                                                                           \
        const struct fast_entry *e_ = &fs->grd[((addr) >> PAGE_SHIFT) & FAST_MASK];                \
        if (LIKELY(e_->tag == ((addr) & (PAGE_MASK | (GS_SIZE - 1))))) {                           \
            memcpy(&(out), (const void *)(e_->addend + (addr)), GS_SIZE);                          \
            hits++;                                                                                \
        } else {                                                                                   \
            CODE_MAY_CHANGE();                                                                     \
            if (UNLIKELY(!gs_load_slow(m, (addr), cpl, &(out))))                                   \
                goto fault;                                                                        \
        }                                                                                          \
    } while (0)
#define GS_STORE(addr, value)                                                                      \
    do {                                                                                           \
        const struct fast_entry *e_ = &fs->gwr[((addr) >> PAGE_SHIFT) & FAST_MASK];                \
        uint64_t w_ = (value);                                                                     \
        if (LIKELY(e_->tag == ((addr) & (PAGE_MASK | (GS_SIZE - 1))))) {                           \
            memcpy((void *)(e_->addend + (addr)), &w_, GS_SIZE);                                   \
            hits++;                                                                                \
        } else {                                                                                   \
            CODE_MAY_CHANGE();                                                                     \
            if (UNLIKELY(!gs_store_slow(m, (addr), cpl, w_)))                                      \
                goto fault;                                                                        \
        }                                                                                          \
    } while (0)
/* Straight (core.h P64_STRAIGHT): after a slow access the next word is entered again. */
#define ON_AFTER(slow) do { ip++; if (UNLIKELY(slow)) goto resync; goto *ip->h; } while (0)
#define LOAD_OP(T)                                                                                 \
    do {                                                                                           \
        int slow_ = 0;                                                                             \
        uint64_t a_ = RS1 + IMM;                                                                   \
        T v_;                                                                                      \
        LOAD_NOTE(T, a_, v_, slow_ = 1);                                                           \
        RD = (uint64_t)(int64_t)v_;                                                                \
        ON_AFTER(slow_);                                                                           \
    } while (0)
#define STORE_OP(T)                                                                                \
    do {                                                                                           \
        int slow_ = 0;                                                                             \
        uint64_t a_ = RS1 + IMM;                                                                   \
        STORE_NOTE(T, a_, RS2, slow_ = 1);                                                         \
        ON_AFTER(slow_);                                                                           \
    } while (0)
/* §3 Stack: a push whose store faults leaves sp unchanged; a pop writes its target last. */
#define PUSH(v) do { uint64_t pv_ = (v), pa_ = r[SP] - 8; STORE(uint64_t, pa_, pv_); r[SP] = pa_; } while (0)
#define POP(out) do { uint64_t qa_ = r[SP]; LOAD(uint64_t, qa_, out); r[SP] = qa_ + 8; } while (0)

/* The bodies fused pairs are made of (core.h P64_PAIRS): DO_x runs instruction x at ip without
 * dispatching (a slow access sets slow_), THEN_x runs it and dispatches what follows. */
#define DO_ADD RD = RS1 + RS2
#define DO_SUB RD = RS1 - RS2
#define DO_AND RD = RS1 & RS2
#define DO_OR RD = RS1 | RS2
#define DO_XOR RD = RS1 ^ RS2
#define DO_ADDI RD = RS1 + IMM
#define DO_ANDI RD = RS1 & IMM
#define DO_ORI RD = RS1 | IMM
#define DO_XORI RD = RS1 ^ IMM
#define DO_SHLI RD = RS1 << IMM32
#define DO_SHRI RD = RS1 >> IMM32
#define DO_LUI RD = IMM
#define DO_LD do { uint64_t a_ = RS1 + IMM, v_; LOAD_NOTE(uint64_t, a_, v_, slow_ = 1); RD = v_; } while (0)
#define DO_SD do { uint64_t a_ = RS1 + IMM; STORE_NOTE(uint64_t, a_, RS2, slow_ = 1); } while (0)
#define THEN_STRAIGHT(x) do { x; ON_AFTER(slow_); } while (0)
#define THEN_ADD THEN_STRAIGHT(DO_ADD)
#define THEN_SUB THEN_STRAIGHT(DO_SUB)
#define THEN_AND THEN_STRAIGHT(DO_AND)
#define THEN_OR THEN_STRAIGHT(DO_OR)
#define THEN_XOR THEN_STRAIGHT(DO_XOR)
#define THEN_ADDI THEN_STRAIGHT(DO_ADDI)
#define THEN_ANDI THEN_STRAIGHT(DO_ANDI)
#define THEN_ORI THEN_STRAIGHT(DO_ORI)
#define THEN_XORI THEN_STRAIGHT(DO_XORI)
#define THEN_SHLI THEN_STRAIGHT(DO_SHLI)
#define THEN_SHRI THEN_STRAIGHT(DO_SHRI)
#define THEN_LUI THEN_STRAIGHT(DO_LUI)
#define THEN_LD THEN_STRAIGHT(DO_LD)
#define THEN_SD THEN_STRAIGHT(DO_SD)
#define THEN_BEQ BRANCH(RS1 == RS2)
#define THEN_BNE BRANCH(RS1 != RS2)
#define THEN_BLT BRANCH((int64_t)RS1 < (int64_t)RS2)
#define THEN_BGE BRANCH((int64_t)RS1 >= (int64_t)RS2)
#define THEN_BLTU BRANCH(RS1 < RS2)
#define THEN_BGEU BRANCH(RS1 >= RS2)
#define THEN_JMP TAKEN_NEXT()

static int divide_error(uint64_t a, uint64_t b)
{
    return b == 0 || (a == (1ull << 63) && b == ~0ull); /* 0, or -2^63 / -1 (§3) */
}

static int taken(unsigned cond, uint64_t a, uint64_t b)
{
    switch (cond) { /* the compare-and-branch opcodes, from beq */
    case 0: return a == b;
    case 1: return a != b;
    case 2: return (int64_t)a < (int64_t)b;
    case 3: return (int64_t)a >= (int64_t)b;
    case 4: return a < b;
    default: return a >= b;
    }
}

static const void *const *label_table;

/* GS_ADDRESS's privilege check is the host class's, which classic leaves alone (§4.2, §4.4). */
#define X(name, NAME, opcode, fmt, priv, sens, used)                                               \
    +((opcode) == P64_OP_LDGS || (opcode) == P64_OP_SDGS || (opcode) == P64_OP_JGS                \
          ? (priv) != P64_PRIV_HOST || (sens) != P64_SENS_HOST                                     \
          : 0)
_Static_assert(0 P64_INSNS(X) == 0, "ldgs, sdgs and jgs must be of the host privilege and sensitivity classes");
#undef X

/* Run at most n0 ticks of straight execution at one CPL, with nothing pending that the
 * boundary of §6.5 would have to deliver in between.  Instructions that may change what the
 * boundary sees (sti, popf, iret, int, mtcr, wrmsr, invlpg) end the block after retiring;
 * retired instructions, data-TLB hits and ticks are charged once, at the end. */
static int exec_block(struct p64_machine *m, int64_t n0)
{
    static const void *const labels[H_COUNT] = {
#define X(name, NAME, ...) [H_##NAME] = &&L_##NAME,
        P64_INSNS(X)
#undef X
        [H_INVALID] = &&L_INVALID, [H_BFAR] = &&L_BFAR, [H_JFAR] = &&L_JFAR, [H_ENTER] = &&L_ENTER,
        [H_HOT] = &&L_HOT, [H_JIT] = &&L_JIT,
#define X(A, B) [H_##A##_##B] = &&L_##A##_##B,
        P64_PAIRS(X)
#undef X
    };
    if (UNLIKELY(!m)) {
        label_table = labels;
        return 0;
    }
    uint64_t *const r = m->cpu.r;
    const unsigned cpl = (unsigned)m->cpu.cpl;
    struct fast_set *fs = &m->fast[cpl];
    __asm__("" : "+r"(fs)); /* opaque: keeps one register rather than rebuilding it per access */
    struct dinsn *ip;
    const uint64_t pc0 = m->cpu.pc;
    uint64_t hits = 0;
    int64_t n = n0;
    struct dinsn *bt_from = NULL, *bt_to = NULL; /* the branch-target cache of TAKEN_NEXT */
    struct dinsn *mark_from = NULL; /* TAKEN_NEXT's branch, while mark_target marks its target */
    int mark_back = 0;
    const void *bt_h = NULL;
    int64_t bt_run = 0;
    int result;
    /* what the end of the block needs, kept out of the registers */
    m->block_n0 = n0;
    m->block_step = m->cpu.flags & FLAGS_TF; /* §6.4: TF when the instruction starts */
    m->block_paging = m->translating;
    m->block_ihits = 0;
    if (m->fetch_valid && (pc0 & (PAGE_MASK | 3)) == m->fetch_va)
        ip = CUR_DP + ((pc0 & PAGE_OFFSET) >> 2);
    else
        GO(pc0);
    NEXT();

    /* ---- alu ---- */
    OP(ADD) SET_RD_ON(RS1 + RS2);
    OP(SUB) SET_RD_ON(RS1 - RS2);
    OP(AND) SET_RD_ON(RS1 & RS2);
    OP(OR) SET_RD_ON(RS1 | RS2);
    OP(XOR) SET_RD_ON(RS1 ^ RS2);
    OP(SHL) SET_RD_ON(RS1 << (RS2 & 63));
    OP(SHR) SET_RD_ON(RS1 >> (RS2 & 63));
    OP(SAR) SET_RD_ON((uint64_t)((int64_t)RS1 >> (RS2 & 63)));
    OP(MUL) SET_RD_ON(RS1 * RS2);
    OP(DIV) {
        if (divide_error(RS1, RS2))
            RAISE(V_DE);
        SET_RD((uint64_t)((int64_t)RS1 / (int64_t)RS2));
    }
    OP(DIVU) {
        if (!RS2)
            RAISE(V_DE);
        SET_RD(RS1 / RS2);
    }
    OP(REM) {
        if (divide_error(RS1, RS2))
            RAISE(V_DE);
        SET_RD((uint64_t)((int64_t)RS1 % (int64_t)RS2));
    }
    OP(REMU) {
        if (!RS2)
            RAISE(V_DE);
        SET_RD(RS1 % RS2);
    }
    OP(SLT) SET_RD_ON((int64_t)RS1 < (int64_t)RS2);
    OP(SLTU) SET_RD_ON(RS1 < RS2);
    OP(ADDI) SET_RD_ON(RS1 + IMM);
    OP(ANDI) SET_RD_ON(RS1 & IMM);
    OP(ORI) SET_RD_ON(RS1 | IMM);
    OP(XORI) SET_RD_ON(RS1 ^ IMM);
    OP(SHLI) SET_RD_ON(RS1 << IMM32);
    OP(SHRI) SET_RD_ON(RS1 >> IMM32);
    OP(SARI) SET_RD_ON((uint64_t)((int64_t)RS1 >> IMM32));
    OP(SLTI) SET_RD_ON((int64_t)RS1 < (int64_t)IMM);
    OP(SLTIU) SET_RD_ON(RS1 < IMM);
    OP(LUI) SET_RD_ON(IMM);

    /* ---- mem (§5) ---- */
    OP(LB) LOAD_OP(int8_t);
    OP(LBU) LOAD_OP(uint8_t);
    OP(LH) LOAD_OP(int16_t);
    OP(LHU) LOAD_OP(uint16_t);
    OP(LW) LOAD_OP(int32_t);
    OP(LWU) LOAD_OP(uint32_t);
    OP(LD) LOAD_OP(uint64_t);
    OP(SB) STORE_OP(uint8_t);
    OP(SH) STORE_OP(uint16_t);
    OP(SW) STORE_OP(uint32_t);
    OP(SD) STORE_OP(uint64_t);
    OP(LDGS) {
        uint64_t a_, v_;
        GS_ADDRESS(a_);
        GS_LOAD(a_, v_);
        SET_RD(v_);
    }
    OP(SDGS) {
        uint64_t a_;
        GS_ADDRESS(a_);
        GS_STORE(a_, RS2);
        NEXT_SEQ();
    }
    OP(JGS) {
        /* the indirect jump of translated code through the host segment (§5.4): a fault of the
         * load leaves pc on the jgs; the target's own faults come at its fetch, as for jr */
        uint64_t a_, t_;
        GS_ADDRESS(a_);
        GS_LOAD(a_, t_);
        JUMP(t_);
    }

    /* ---- branch: in-page targets were resolved by the decoder (§8.2) ---- */
    OP(BEQ) BRANCH(RS1 == RS2);
    OP(BNE) BRANCH(RS1 != RS2);
    OP(BLT) BRANCH((int64_t)RS1 < (int64_t)RS2);
    OP(BGE) BRANCH((int64_t)RS1 >= (int64_t)RS2);
    OP(BLTU) BRANCH(RS1 < RS2);
    OP(BGEU) BRANCH(RS1 >= RS2);
    /* ---- fused pairs (core.h P64_PAIRS, decode.c fuse) ---- */
    /* The first instruction, then the second, without a check between them: both are of one
     * straight run, whose ticks were charged when it was entered, and a run the budget ends
     * inside runs from the scratch records, where the last word is never fused (short_run); a
     * fault of either leaves ip on its own record.  After a slow access (a TLB miss, or a store
     * that reached decoded code, §15) the second runs through its own record, which the access
     * may have decoded again, entered as a new run (resync). */
#define PAIR(A, B)                                                                                 \
    OP(A##_##B) {                                                                                  \
        int slow_ = 0;                                                                             \
        DO_##A;                                                                                    \
        ip++;                                                                                      \
        if (UNLIKELY(slow_))                                                                       \
            goto resync;                                                                           \
        THEN_##B;                                                                                  \
    }
    P64_PAIRS(PAIR)
#undef PAIR
    OP(BFAR) {
        if (taken(ip->aux, RS1, RS2))
            JUMP(PC + IMM);
        NEXT_SEQ();
    }
    OP(JMP) TAKEN_NEXT();
    OP(JFAR) JUMP(PC + IMM);
    OP(CALL) {
        uint64_t pc_ = PC;
        PUSH(pc_ + 4);
        JUMP(pc_ + IMM);
    }
    OP(JR) JUMP(RS1);
    OP(CALLR) {
        uint64_t t_ = RS1, pc_ = PC;
        PUSH(pc_ + 4);
        JUMP(t_);
    }
    OP(RET) {
        uint64_t t_;
        POP(t_);
        JUMP(t_);
    }

    /* ---- stack ---- */
    OP(PUSH) {
        PUSH(RS1);
        NEXT_SEQ();
    }
    OP(POP) {
        uint64_t v_;
        POP(v_);
        SET_RD(v_);
    }

    /* ---- system (§4, §6) ---- */
    OP(INT) {
        uint64_t pc_ = PC;
        m->cpu.pc = pc_;
        int rc = deliver_software(m, (unsigned)ip->imm, pc_ + 4);
        if (rc == DELIVER_FAULT)
            goto fault; /* the int's own fault (§6.6) */
        RETIRED(INT);
        m->block_step = 0; /* int n raises no single-step trap (§6.4) */
        GO(m->cpu.pc);
        if (rc == DELIVER_EXIT)
            goto exit_out;
        END_BLOCK();
    }
    OP(IRET) {
        REQUIRE_PRIV(P64_OP_IRET);
        uint64_t s0 = r[SP], s1 = s0 + 8, s2 = s0 + 16, s3 = s0 + 24, pc_, cs_, flags_, sp_;
        LOAD(uint64_t, s0, pc_);
        LOAD(uint64_t, s1, cs_);
        LOAD(uint64_t, s2, flags_);
        LOAD(uint64_t, s3, sp_);
        if ((cs_ & 3) < cpl)
            RAISE_GP0();
        m->cpu.flags = flags_after_pop(&m->cpu, flags_); /* judged at the old CPL (§6.4) */
        m->cpu.cpl = cs_ & 3;
        r[SP] = sp_;
        RETIRED(IRET);
        GO(pc_);
        END_BLOCK();
    }
    OP(HLT) {
        REQUIRE_PRIV(P64_OP_HLT);
        if (GUEST && EXITS(HLT_EXITING))
            VM_EXIT(P64_VMEXIT_HLT, 0);
        m->cpu.halted = 1;
        RETIRED(HLT);
        ip++;
        EXIT(P64_EXIT_HLT);
    }
    OP(CLI) {
        REQUIRE_PRIV(P64_OP_CLI);
        m->cpu.flags &= ~FLAGS_IF;
        RETIRED(CLI);
        NEXT_SEQ();
    }
    OP(STI) {
        REQUIRE_PRIV(P64_OP_STI);
        if (!(m->cpu.flags & FLAGS_IF))
            m->cpu.int_shadow = 1; /* sti; hlt cannot lose an interrupt (§6.5) */
        m->cpu.flags |= FLAGS_IF;
        RETIRED(STI);
        ip++;
        END_BLOCK();
    }
    OP(PUSHF) {
        REQUIRE_PRIV(P64_OP_PUSHF);
        PUSH(m->cpu.flags);
        RETIRED(PUSHF);
        NEXT_SEQ();
    }
    OP(POPF) {
        REQUIRE_PRIV(P64_OP_POPF);
        uint64_t v_;
        POP(v_);
        m->cpu.flags = flags_after_pop(&m->cpu, v_);
        RETIRED(POPF);
        ip++;
        END_BLOCK();
    }
    OP(IN) {
        REQUIRE_PRIV(P64_OP_IN);
        if (GUEST && vmx_io_exits(m, (RS1 + IMM) & 0xffff))
            VM_EXIT(P64_VMEXIT_IO_INSTRUCTION, 8u | REG(ip->aux) | (((RS1 + IMM) & 0xffff) << 16));
        m->exit.port = (RS1 + IMM) & 0xffff;
        m->exit.reg = ip->aux;
        m->ctr.port_reads++;
        RETIRED(IN);
        ip++;
        EXIT(P64_EXIT_IO_IN);
    }
    OP(OUT) {
        REQUIRE_PRIV(P64_OP_OUT);
        if (GUEST && vmx_io_exits(m, (RS1 + IMM) & 0xffff))
            VM_EXIT(P64_VMEXIT_IO_INSTRUCTION, REG(ip->rs2) | (((RS1 + IMM) & 0xffff) << 16));
        m->exit.port = (RS1 + IMM) & 0xffff;
        m->exit.value = RS2;
        m->ctr.port_writes++;
        RETIRED(OUT);
        ip++;
        EXIT(P64_EXIT_IO_OUT);
    }
    OP(MTCR) {
        REQUIRE_PRIV(P64_OP_MTCR);
        uint64_t v_ = RS1;
        if (GUEST) { /* V.3: CR3/CR8 exiting, the CR0/CR4 masks, the TPR shadow */
            uint64_t q_ = ip->aux | (CR_ACCESS_MTCR << 4) | REG(ip->rs1);
            if ((ip->aux == 3 && EXITS(CR3_LOAD_EXITING)) || (ip->aux == 8 && EXITS(CR8_LOAD_EXITING)))
                VM_EXIT(P64_VMEXIT_CR_ACCESS, q_);
            if (ip->aux == 0 || ip->aux == 4) {
                uint64_t mask_ = ip->aux ? m->vmx.v->f[P64_VMCS_CR4_GUEST_HOST_MASK] : m->vmx.v->f[P64_VMCS_CR0_GUEST_HOST_MASK];
                uint64_t shadow_ = ip->aux ? m->vmx.v->f[P64_VMCS_CR4_READ_SHADOW] : m->vmx.v->f[P64_VMCS_CR0_READ_SHADOW];
                if ((v_ ^ shadow_) & mask_)
                    VM_EXIT(P64_VMEXIT_CR_ACCESS, q_);
                v_ = (v_ & ~mask_) | (read_cr(m, ip->aux) & mask_);
            }
        }
        if (!write_cr(m, ip->aux, v_))
            RAISE_GP0();
        m->ctr.cr_writes++; /* §13: the write took effect (a TPR-below-threshold exit follows it) */
        RETIRED(MTCR);
        if (GUEST && ip->aux == 8 && m->vmx.tpr_shadow && v_ < m->vmx.v->f[P64_VMCS_TPR_THRESHOLD]) {
            ip++; /* V.3: trap-like, after the write retired */
            vmx_exit(m, P64_VMEXIT_TPR_BELOW_THRESHOLD, 0);
            goto exit_out;
        }
        GO(PC + 4); /* translation may have changed: fetch enters again (§8.2) */
        END_BLOCK();
    }
    OP(MFCR) {
        REQUIRE_PRIV(P64_OP_MFCR);
        if (GUEST) {
            if ((ip->aux == 3 && EXITS(CR3_STORE_EXITING)) || (ip->aux == 8 && EXITS(CR8_STORE_EXITING)))
                VM_EXIT(P64_VMEXIT_CR_ACCESS, ip->aux | (CR_ACCESS_MFCR << 4) | REG(ip->rd));
            RETIRED(MFCR);
            SET_RD(vmx_read_cr(m, ip->aux));
        }
        RETIRED(MFCR);
        SET_RD(read_cr(m, ip->aux));
    }
    OP(LIDT) {
        REQUIRE_PRIV(P64_OP_LIDT);
        if (GUEST && EXITS(DESCRIPTOR_TABLE_EXITING))
            VM_EXIT(P64_VMEXIT_DESCRIPTOR_TABLE, REG(ip->rs1));
        m->cpu.idtr = RS1;
        RETIRED(LIDT);
        NEXT_SEQ();
    }
    OP(SIDT) {
        REQUIRE_PRIV(P64_OP_SIDT);
        if (GUEST && EXITS(DESCRIPTOR_TABLE_EXITING))
            VM_EXIT(P64_VMEXIT_DESCRIPTOR_TABLE, 1u | REG(ip->rd));
        RETIRED(SIDT);
        SET_RD(m->cpu.idtr);
    }
    OP(SMSW) {
        REQUIRE_PRIV(P64_OP_SMSW);
        RETIRED(SMSW);
        if (GUEST)
            SET_RD(vmx_read_cr(m, 0) & 0xffff); /* V.3: the read shadow removes smsw's obstacle */
        SET_RD(m->cpu.cr0 & 0xffff);
    }
    OP(RDCS) {
        REQUIRE_PRIV(P64_OP_RDCS);
        RETIRED(RDCS);
        SET_RD(cpl);
    }
    OP(RDTSC) {
        REQUIRE_PRIV(P64_OP_RDTSC);
        if (GUEST && EXITS(RDTSC_EXITING))
            VM_EXIT(P64_VMEXIT_RDTSC, 0);
        RETIRED(RDTSC);
        SET_RD(NOW() + m->cpu.tsc_offset);
    }
    OP(RDMSR) {
        REQUIRE_PRIV(P64_OP_RDMSR);
        if (GUEST && vmx_msr_exits(m, RS1, 0))
            VM_EXIT(P64_VMEXIT_RDMSR, RS1);
        uint64_t v_;
        if (!read_msr(m, RS1, NOW(), &v_))
            RAISE_GP0();
        RETIRED(RDMSR);
        SET_RD(v_);
    }
    OP(WRMSR) {
        REQUIRE_PRIV(P64_OP_WRMSR);
        if (GUEST && vmx_msr_exits(m, RS1, 1))
            VM_EXIT(P64_VMEXIT_WRMSR, RS1);
        if (!write_msr(m, RS1, RS2, NOW()))
            RAISE_GP0();
        RETIRED(WRMSR);
        GO(PC + 4);
        END_BLOCK();
    }
    OP(INVLPG) {
        REQUIRE_PRIV(P64_OP_INVLPG);
        if (GUEST && EXITS(INVLPG_EXITING))
            VM_EXIT(P64_VMEXIT_INVLPG, RS1 + IMM);
        tlb_invlpg(m, RS1 + IMM);
        RETIRED(INVLPG);
        GO(PC + 4);
        END_BLOCK();
    }
    OP(VMCALL) {
        if (GUEST) { /* V.2: always exits in guest mode, at any CPL */
            m->ctr.vmcalls++;
            VM_EXIT(P64_VMEXIT_VMCALL, (uint64_t)ip->imm);
        }
        REQUIRE_PRIV(P64_OP_VMCALL); /* #UD outside guest mode */
        RAISE(V_UD);
    }
    OP(HCALL) {
        REQUIRE_PRIV(P64_OP_HCALL); /* §4.2: the privilege check comes first, in guest mode too (V.3) */
        if (GUEST)
            RAISE(V_UD); /* V.2: host software is not reachable from guest mode */
        m->exit.number = (uint64_t)ip->imm;
        m->ctr.hcalls++;
        RETIRED(HCALL);
        ip++;
        EXIT(P64_EXIT_HCALL);
    }
    OP(UD) {
        REQUIRE_PRIV(P64_OP_UD);
        RAISE(V_UD);
    }
    OP(INVALID) RAISE(V_UD);

    /* §8.2: fetch enters a page (after a jump, or off the end of the last one).  The dispatch
     * that got here took the tick of the instruction at the target. */
    OP(ENTER) {
        if (UNLIKELY(n < 1)) /* the sentinel and the stub take no tick of their own (run 0) */
            goto budget_out;
        uint64_t t_ = PC;
        const struct exec_entry *x_ = &fs->ex[(t_ >> PAGE_SHIFT) & FAST_MASK];
        if (UNLIKELY(x_->tag != (t_ & (PAGE_MASK | 3))))
            goto enter_slow;
        m->block_ihits++;
        CUR_VA = t_ & PAGE_MASK, CUR_DP = x_->dp;
        ip = x_->dp + ((t_ & PAGE_OFFSET) >> 2);
        NEXT();
    }
enter_slow: {
        /* A slice's work is spent on decoding (§10): once an instruction has retired, the block
         * ends before fetch enters t_'s page, just where a budget would have ended it (fetch
         * enters the page in the next block).  Otherwise the fetch takes the tick of t_'s
         * instruction (n >= 1 here), which a fetch fault reports as that instruction's, and gives
         * it back for NEXT to charge with its run. */
        if (UNLIKELY(m->ctr.pages_decoded > m->pause_decodes) && m->block_n0 - n >= 1)
            goto boundary;
        uint64_t t_ = PC;
        n--;
        CODE_MAY_CHANGE();
        struct dinsn *dp_ = fetch_page(m, t_, cpl);
        if (UNLIKELY(!dp_))
            goto fault;
        n++;
        CUR_VA = t_ & PAGE_MASK, CUR_DP = dp_;
        ip = dp_ + ((t_ & PAGE_OFFSET) >> 2);
        NEXT();
    }
    /* ---- the block translator (translate.c, §15) ---- */
    /* A translatable run's first word counts its executions until it is translated; either way
     * it then runs as before.  Translating may drop every translation (a full buffer). */
    OP(HOT) {
        struct dpage *p_ = (struct dpage *)(void *)CUR_DP;
        unsigned i_ = (unsigned)(ip - CUR_DP);
        CODE_MAY_CHANGE();
        if (jit_hot(m, p_, i_))
            goto L_JIT;
        goto *labels[p_->hid[i_]];
    }
    /* A translated run: entered as its first word's handler, the run charged (n is the budget
     * after its last word); the code charges each further run it enters itself and comes back
     * with n the budget before the word it stopped at is charged, which NEXT charges.  That word
     * runs by its own handler (JIT_ORIGINAL) when the code left it to the interpreter to run (a
     * fast-array miss, a budget that cannot pay the run), else by d.h, as a branch's target. */
    OP(JIT) {
        struct jit_io io_ = {n + ip->run, hits};
        struct dinsn *entry_ = ip;
        const int64_t n_in_ = io_.n;
        uintptr_t x_ = ((jit_code)(uintptr_t)ip->xl)(r, fs, &io_);
        n = io_.n, hits = io_.hits;
        ip = (struct dinsn *)(x_ & ~JIT_ORIGINAL);
        if (UNLIKELY(x_ == ((uintptr_t)entry_ | JIT_ORIGINAL) && n == n_in_)) {
            /* it gave its first word back at once, having run nothing (a loop that ran ends
             * at its first word too, with the budget spent): entries in a row that did nothing are
             * counted, and at JIT_IDLE the word runs by its own handler for good (a loop whose
             * first access misses every time, translate.c jit_retire) */
            struct dpage *p_ = (struct dpage *)(void *)CUR_DP;
            if (++p_->idle[entry_ - CUR_DP] == JIT_IDLE) {
                jit_retire(m, p_, (unsigned)(entry_ - CUR_DP));
                CODE_MAY_CHANGE();
            }
        } else if (UNLIKELY(((struct dpage *)(void *)CUR_DP)->idle[entry_ - CUR_DP])) {
            ((struct dpage *)(void *)CUR_DP)->idle[entry_ - CUR_DP] = 0;
        }
        if (UNLIKELY((n -= ip->run) < 0))
            goto short_run;
        if (x_ & JIT_ORIGINAL)
            goto *labels[((const struct dpage *)(const void *)CUR_DP)->hid[ip - CUR_DP]];
        goto *ip->h;
    }
mark_target: /* TAKEN_NEXT's in-page branch to ip, the translator on (translate.c jit_mark) */
    jit_mark(m, CUR_DP, ip);
    if (mark_back)
        bt_from = mark_from, bt_to = ip, bt_h = ip->h, bt_run = ip->run;
    NEXT();
short_run: {
        /* The budget ends inside the run at ip: its first n words run from the scratch records,
         * copied at their own indices (so PC holds) with runs that end at the budget, the last
         * unfused so that no pair runs past it, and after them a word that ends the block. */
        n += ip->run; /* NEXT took the run it could not pay */
        if (n == 0)
            goto budget_out;
        struct dinsn *s_ = m->scratch;
        size_t i_ = (size_t)(ip - CUR_DP), k_ = (size_t)n;
        memcpy(s_ + i_, ip, k_ * sizeof *ip);
        if (UNLIKELY(((const struct dpage *)(const void *)CUR_DP)->njit)) {
            /* the translator's words run by their own handlers here: a translation would run
             * past the budget the scratch records end at */
            const uint16_t *hid_ = ((const struct dpage *)(const void *)CUR_DP)->hid;
            for (size_t j_ = 0; j_ < k_; j_++)
                if (s_[i_ + j_].h == labels[H_HOT] || s_[i_ + j_].h == labels[H_JIT])
                    s_[i_ + j_].h = labels[hid_[i_ + j_]], s_[i_ + j_].xl = 0;
        }
        s_[i_ + k_ - 1].h = labels[((const struct dpage *)(const void *)CUR_DP)->plain[i_ + k_ - 1]];
        for (size_t j_ = 0; j_ < k_; j_++)
            s_[i_ + j_].run = (int64_t)(k_ - j_);
        memset(&s_[i_ + k_], 0, sizeof s_[i_ + k_]);
        s_[i_ + k_].h = &&budget_stop;
        m->scratch_of = CUR_DP;
        CUR_DP = s_;
        ip = s_ + i_;
        n = 0;
        goto *ip->h;
    }
resync:
    /* A straight word's slow access (n settled): the next word, entered as a new run, on its
     * decoded page rather than in the scratch records, which the access may have made stale. */
    if (UNLIKELY(CUR_DP == m->scratch)) {
        ip = m->scratch_of + (ip - CUR_DP);
        CUR_DP = m->scratch_of;
    }
    NEXT();
budget_stop: /* the word after the scratch records: n is 0 */

budget_out:
    n = 0;
    result = BLK_BUDGET;
    goto out;
vm_exit_out:
    result = BLK_VMEXIT;
    goto out;
fault:
    result = BLK_FAULT;
    goto out;
exit_out:
    result = BLK_EXIT;
    goto out;
boundary:
    result = BLK_BOUNDARY;
out:
    if (CUR_DP == m->scratch) {
        ip = m->scratch_of + (ip - CUR_DP);
        CUR_DP = m->scratch_of;
    }
    m->cpu.pc = PC;
    m->fetch_valid = CUR_DP != &m->stub && ip < CUR_DP + DPAGE_WORDS;
    uint64_t ticks = (uint64_t)(m->block_n0 - n), retired = ticks - (result == BLK_FAULT || result == BLK_VMEXIT);
    m->block_ticks = ticks;
    m->ctr.ticks += ticks;
    m->clock += ticks;
    m->ctr.insn[m->guest][cpl] += retired;
    if (retired)
        m->vmx.shadow_held = 0;
    if (m->block_paging)
        m->ctr.dtlb_hits += hits, m->ctr.itlb_hits += m->block_ihits;
    if (m->block_step && retired)
        m->cpu.pending_db = 1;
    return result;
}

const void *const *handler_table(void)
{
    if (!label_table)
        exec_block(NULL, 0);
    return label_table;
}

/* §10: host writes take effect as if an instruction had loaded them. */
void begin_run(struct p64_machine *m)
{
    struct p64_cpu *c = &m->cpu;
    m->labels = handler_table();
    memset(&m->stub, 0, sizeof m->stub);
    m->stub.h = m->labels[H_ENTER];
    c->r[0] = 0;
    memset(&m->exit, 0, sizeof m->exit);
    if (c->cr3 != m->seen_cr3)
        tlb_flush_nonglobal(m);
    if (((c->cr0 ^ m->seen_cr0) & (CR0_PG | CR0_WP)) || ((c->cr4 ^ m->seen_cr4) & (CR4_PL | CR4_PGE)))
        tlb_flush_all(m);
    if (c->vm_tag != m->seen_vm_tag)
        fast_clear_all(m);
    update_translating(m);
    fast_sync(m); /* a host write of CR0.PG or MSR_SEGLIMIT */
    m->fetch_valid = 0; /* every run starts by entering the page of pc (§8.2) */
}

void end_run(struct p64_machine *m)
{
    m->seen_cr0 = m->cpu.cr0;
    m->seen_cr3 = m->cpu.cr3;
    m->seen_cr4 = m->cpu.cr4;
    m->seen_vm_tag = m->cpu.vm_tag;
}

/* §6.5 steps 3-4: skip the shadow, or deliver the pending interrupt (a tick).  Returns -1
 * if nothing was delivered, else DELIVER_OK or DELIVER_EXIT.  With external-interrupt
 * exiting, guest mode never takes the vector itself (docs/vmx.md V.3). */
static int boundary_interrupt(struct p64_machine *m)
{
    if (m->cpu.int_shadow) {
        m->cpu.int_shadow = 0;
        m->vmx.shadow_held = m->guest; /* kept if the next instruction exits fault-like (V.2) */
        return -1;
    }
    if (m->vmx.intr_exiting || !interrupt_deliverable(&m->cpu))
        return -1;
    int rc = deliver_external(m);
    m->ctr.ticks++;
    m->clock++;
    return rc;
}

/* Guest mode: could the next boundary make a VM exit (V.3)?  Then blocks are one tick. */
static int guest_watch(const struct p64_machine *m)
{
    return (m->vmx.intr_exiting && m->cpu.intr_vector >= 0) || (m->vmx.window_exiting && (m->cpu.flags & FLAGS_IF));
}

/* A slice's work (§10): each tick is one unit, and what may make a tick costly weighs more, so
 * that a slice of the slowest guest takes about as long as one of plain ticks at their slowest
 * (measured in docs/architecture.md §10): the end of a block (the boundary's work, a change of
 * translation or limit that empties fast arrays), a decoded page, and a TLB flush or invlpg
 * (which sweep both TLBs and empty fast arrays). */
#define BLOCK_WORK 8u
#define DECODE_WORK 64u
#define FLUSH_WORK 16u /* + one unit per 64 TLB entries */

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    uint64_t p;
    return __builtin_mul_overflow(a, b, &p) ? UINT64_MAX : p;
}

static uint64_t sweeps(const struct p64_machine *m)
{
    return m->ctr.tlb_flushes + m->ctr.tlb_full_flushes + m->ctr.invlpgs;
}

/* §6.5: the order at a boundary, then a block of ticks, until an exit (host or guest mode), or
 * until `slice` units of work are done (NO_SLICE: never): then the run pauses (§10) at the
 * point where its budget would be checked, so that going on (run_loop again, with the budget
 * left) is the same as not having stopped.  Returns the budget left. */
uint64_t run_loop(struct p64_machine *m, uint64_t budget, uint64_t slice)
{
    struct p64_cpu *c = &m->cpu;
    uint64_t left = budget, blocks = 0;
    const uint64_t decoded0 = m->ctr.pages_decoded, sweeps0 = sweeps(m);
    const uint64_t sweep_work = FLUSH_WORK + (m->dtlb.entries + m->itlb.entries) / 64;
    m->pause_decodes = UINT64_MAX;
    for (;;) {
        if (c->shutdown) {
            if (m->guest)
                vmx_exit(m, P64_VMEXIT_TRIPLE_FAULT, 0);
            else
                m->exit.reason = P64_EXIT_SHUTDOWN;
            break;
        }
        if (c->pending_db && deliver_single_step(m) != DELIVER_OK)
            break;
        if (left == 0) {
            m->exit.reason = P64_EXIT_BUDGET;
            break;
        }
        uint64_t work = 0;
        if (slice != NO_SLICE) {
            work = add_sat(add_sat(budget - left, mul_sat(blocks, BLOCK_WORK)),
                           add_sat(mul_sat(m->ctr.pages_decoded - decoded0, DECODE_WORK),
                                   mul_sat(sweeps(m) - sweeps0, sweep_work)));
            if (work >= slice) {
                m->exit.reason = P64_EXIT_PAUSED;
                break;
            }
            m->pause_decodes = m->ctr.pages_decoded + (slice - work) / DECODE_WORK;
        }
        if (m->guest && vmx_boundary(m))
            break;
        int rc = boundary_interrupt(m);
        if (rc >= 0) {
            left--;
            if (rc == DELIVER_EXIT)
                break;
            continue;
        }
        if (c->halted) {
            m->exit.reason = P64_EXIT_HLT;
            break;
        }
        /* one tick at a time when the next boundary may have to deliver something */
        int one = (c->flags & FLAGS_TF) || (!m->vmx.intr_exiting && interrupt_deliverable(c)) ||
                  (m->guest && guest_watch(m));
        uint64_t most = one ? 1 : left;
        if (slice != NO_SLICE && most > slice - work)
            most = slice - work;
        int res = exec_block(m, most > INT64_MAX ? INT64_MAX : (int64_t)most);
        left -= m->block_ticks;
        blocks++;
        if (res == BLK_EXIT || res == BLK_VMEXIT || (res == BLK_FAULT && deliver_fault(m, c->pc) != DELIVER_OK))
            break;
    }
    m->pause_decodes = UINT64_MAX;
    return left;
}

/* §9: a run ends with a budget exit when the clock reaches 2^64 - 1; it never wraps. */
uint64_t run_budget(const struct p64_machine *m, uint64_t budget)
{
    return budget < UINT64_MAX - m->clock ? budget : UINT64_MAX - m->clock;
}

/* The end of a call that ran ticks (§10): a pause keeps the run open, with the CPU as it
 * paused; any other exit ends the run (for vmrun, leaving guest mode, docs/vmx.md V.1).  The
 * host-mode run's CPU is recorded as it paused, so that a CPU written while the run is open
 * and kept by p64_close takes effect at the next run as any host write does. */
int end_call(struct p64_machine *m, uint64_t left)
{
    if (m->exit.reason == P64_EXIT_PAUSED) {
        m->open = 1;
        m->open_left = left;
        m->open_cpu = m->cpu;
        if (!m->guest)
            end_run(m);
        return P64_OK;
    }
    m->open = 0;
    if (m->guest)
        vmx_leave(m, NULL);
    else
        end_run(m);
    return P64_OK;
}

int p64_run_slice(struct p64_machine *m, uint64_t budget, uint64_t slice)
{
    if (m->open)
        return refuse_open(m, "run");
    if (!slice)
        return p64_error(m, P64_ERR_RANGE, "run: slice = 0: a slice runs at least one tick");
    if (!check_state(m))
        return P64_ERR_STATE;
    begin_run(m);
    return end_call(m, run_loop(m, run_budget(m, budget), slice));
}

int p64_run(struct p64_machine *m, uint64_t budget)
{
    return p64_run_slice(m, budget, NO_SLICE);
}

/* The first field of the CPU that differs from the CPU as the run paused, or NULL (r[i]: *reg
 * = i). */
static const char *cpu_written(const struct p64_cpu *now, const struct p64_cpu *then, int *reg)
{
#define FIELD(f) {#f, offsetof(struct p64_cpu, f), sizeof then->f}
    static const struct {
        const char *name;
        size_t offset, size;
    } fields[] = {
        FIELD(pc), FIELD(flags), FIELD(cpl), FIELD(cr0), FIELD(cr2), FIELD(cr3), FIELD(cr4), FIELD(cr8),
        FIELD(idtr), FIELD(rsp), FIELD(seglimit), FIELD(cslimit), FIELD(gsbase), FIELD(gslimit), FIELD(tsc_offset),
        FIELD(halted), FIELD(int_shadow), FIELD(intr_vector), FIELD(intr_acked), FIELD(shutdown), FIELD(pending_db),
        FIELD(vm_tag), FIELD(reserved),
    };
#undef FIELD
    *reg = -1;
    if (!memcmp(now, then, sizeof *now))
        return NULL;
    for (int i = 0; i < 17; i++)
        if (now->r[i] != then->r[i])
            return *reg = i, "r";
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (memcmp((const char *)now + fields[i].offset, (const char *)then + fields[i].offset, fields[i].size))
            return fields[i].name;
    return "state";
}

int p64_resume(struct p64_machine *m, uint64_t slice)
{
    if (!m->open)
        return p64_error(m, P64_ERR_STATE, "resume: no run is open (a run stays open when p64_run_slice, "
                                           "p64_vmrun_slice or p64_resume exits with P64_EXIT_PAUSED)");
    if (!slice)
        return p64_error(m, P64_ERR_RANGE, "resume: slice = 0: a slice runs at least one tick");
    int reg;
    const char *field = cpu_written(&m->cpu, &m->open_cpu, &reg);
    if (field) {
        char name[16];
        if (reg >= 0)
            snprintf(name, sizeof name, "r[%d]", reg);
        return p64_error(m, P64_ERR_STATE,
                         "resume: cpu.%s was written while the run was open; the host writes the CPU between "
                         "runs (§10): close the run (p64_close) first",
                         reg >= 0 ? name : field);
    }
    m->exit.reason = P64_EXIT_BUDGET; /* as begin_run leaves it */
    return end_call(m, run_loop(m, m->open_left, slice));
}

/* The budget exit the run would have made had its budget run out where it paused: run_loop
 * paused just where it checks the budget (§10). */
int p64_close(struct p64_machine *m)
{
    if (!m->open)
        return P64_OK;
    m->open = 0;
    m->exit.reason = P64_EXIT_BUDGET;
    if (m->guest)
        vmx_leave(m, &m->open_cpu);
    return P64_OK;
}
