/* The block translator: hot straight runs of a decoded page as x86-64 code that keeps every
 * observation of the interpreter's (docs/architecture.md §15, "The block translator"). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <stdlib.h>

#include "core.h"

/* The setting (§15): P64_TRANSLATE=off turns the translator off, a decimal number sets the
 * threshold (executions of a run's first word before it is translated; 0 translates at the
 * first), unset leaves DEFAULT_THRESHOLD.  Read once, when a machine is made. */
#define DEFAULT_THRESHOLD 50u

#if defined(__x86_64__)
#include <sys/mman.h>

#define JIT_BYTES (1u << 20)     /* the code buffer; full, every translation is dropped */
#define BLOCK_WORDS 64u          /* words of one translation at most */
#define WORD_BYTES 128u          /* code of one word, its exit stub included, at most */
#define BLOCK_BYTES (BLOCK_WORDS * WORD_BYTES + 256u)

struct jit {
    uint8_t *buf;
    size_t used;
    uint64_t threshold;
    int broken; /* the buffer's protection could not be changed: nothing is translated again */
};

/* ---- x86-64 encoding ---- */
enum { RAX = 0, RCX = 1, RDX = 2, RSI = 6, RDI = 7, R8 = 8, R9 = 9, R10 = 10, R11 = 11 };
/* the translation's registers: guest register file, fast set, jit_io, budget, hits */
#define REGS RDI
#define FS RSI
#define IO RDX
#define BUDGET R8
#define HITS R9

struct emit {
    uint8_t *p, *end;
    int ok;
};

static void byte(struct emit *e, unsigned b)
{
    if (e->p < e->end)
        *e->p++ = (uint8_t)b;
    else
        e->ok = 0;
}

static void u32(struct emit *e, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        byte(e, (v >> (8 * i)) & 0xff);
}

static void u64(struct emit *e, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        byte(e, (unsigned)(v >> (8 * i)) & 0xff);
}

static void rex_w(struct emit *e, unsigned reg, unsigned index, unsigned base)
{
    byte(e, 0x48 | ((reg >> 3) & 1) << 2 | ((index >> 3) & 1) << 1 | ((base >> 3) & 1));
}

/* op reg, [base + disp] (or the reverse, by opcode); base is neither rsp nor r12 */
static void op_mem(struct emit *e, unsigned opcode, unsigned reg, unsigned base, int32_t disp)
{
    rex_w(e, reg, 0, base);
    byte(e, opcode);
    if (disp >= -128 && disp <= 127) {
        byte(e, 0x40 | (reg & 7) << 3 | (base & 7));
        byte(e, (uint8_t)disp);
    } else {
        byte(e, 0x80 | (reg & 7) << 3 | (base & 7));
        u32(e, (uint32_t)disp);
    }
}

/* op reg, [base + index + disp32] */
static void op_sib(struct emit *e, unsigned opcode, unsigned reg, unsigned base, unsigned index, int32_t disp)
{
    rex_w(e, reg, index, base);
    byte(e, opcode);
    byte(e, 0x80 | (reg & 7) << 3 | 4);
    byte(e, (index & 7) << 3 | (base & 7));
    u32(e, (uint32_t)disp);
}

/* op reg, imm32 (sign-extended): ext is the /digit of opcode 0x81 */
static void op_imm(struct emit *e, unsigned ext, unsigned reg, int32_t imm)
{
    rex_w(e, 0, 0, reg);
    byte(e, 0x81);
    byte(e, 0xc0 | ext << 3 | (reg & 7));
    u32(e, (uint32_t)imm);
}

/* shift reg by imm8: ext /4 shl, /5 shr, /7 sar */
static void shift_imm(struct emit *e, unsigned ext, unsigned reg, unsigned count)
{
    rex_w(e, 0, 0, reg);
    byte(e, 0xc1);
    byte(e, 0xc0 | ext << 3 | (reg & 7));
    byte(e, count);
}

static void mov_rr(struct emit *e, unsigned dst, unsigned src)
{
    rex_w(e, src, 0, dst);
    byte(e, 0x89);
    byte(e, 0xc0 | (src & 7) << 3 | (dst & 7));
}

enum { ADD_EXT = 0, OR_EXT = 1, AND_EXT = 4, SUB_EXT = 5, XOR_EXT = 6, CMP_EXT = 7 };
#define MOV_LOAD 0x8b
#define MOV_STORE 0x89
#define GUEST(i) ((int32_t)(8 * (i))) /* displacement of r[i] from REGS */

static void load_reg(struct emit *e, unsigned host, unsigned guest) { op_mem(e, MOV_LOAD, host, REGS, GUEST(guest)); }
static void store_reg(struct emit *e, unsigned host, unsigned guest) { op_mem(e, MOV_STORE, host, REGS, GUEST(guest)); }

/* jcc/jmp rel32 whose target is patched later: returns where the rel32 is */
static uint8_t *jump(struct emit *e, unsigned cc) /* cc: 0 for jmp, else the second byte of 0F 8x */
{
    if (cc)
        byte(e, 0x0f), byte(e, cc);
    else
        byte(e, 0xe9);
    uint8_t *at = e->p;
    u32(e, 0);
    return at;
}

static void patch(struct emit *e, uint8_t *at, const uint8_t *target)
{
    if (!e->ok || !at)
        return;
    int32_t rel = (int32_t)(target - (at + 4));
    memcpy(at, &rel, 4);
}

/* Leave for the interpreter: the budget before the exit word's run is charged (BUDGET + adjust,
 * adjust being the ticks of that word's run already charged), the hits, and the record. */
static void leave(struct emit *e, int32_t adjust, const struct dinsn *rec, uintptr_t original)
{
    if (adjust)
        op_imm(e, ADD_EXT, BUDGET, adjust);
    op_mem(e, MOV_STORE, BUDGET, IO, (int32_t)offsetof(struct jit_io, n));
    op_mem(e, MOV_STORE, HITS, IO, (int32_t)offsetof(struct jit_io, hits));
    rex_w(e, 0, 0, RAX);
    byte(e, 0xb8); /* mov rax, imm64 */
    u64(e, (uintptr_t)rec | original);
    byte(e, 0xc3); /* ret */
}

/* Offset of a translation's head (its budget check) from its entry, past the two loads of
 * jit_io: a translation that goes on at a word whose run is translated too jumps there. */
#define JIT_HEAD 8

/* Go on at record rec, a run's first word (its run not charged): if rec is translated now
 * (d.h is H_JIT; checked when the jump is made, so a translation dropped since is never
 * entered), into its translation's head, as the interpreter's NEXT would enter it; else leave
 * for the interpreter. */
static void chain(struct emit *e, const struct dinsn *rec, const void *jit_label)
{
    rex_w(e, 0, 0, RAX);
    byte(e, 0xb8); /* mov rax, imm64: the record (its handler is its first field) */
    u64(e, (uintptr_t)rec);
    rex_w(e, 0, 0, RCX);
    byte(e, 0xb8 | (RCX & 7)); /* mov rcx, imm64: the H_JIT handler */
    u64(e, (uintptr_t)jit_label);
    rex_w(e, RCX, 0, RAX); /* cmp [rax], rcx */
    byte(e, 0x39);
    byte(e, (RCX & 7) << 3 | (RAX & 7));
    uint8_t *no = jump(e, 0x85);
    op_mem(e, MOV_LOAD, RAX, RAX, (int32_t)offsetof(struct dinsn, xl));
    op_imm(e, ADD_EXT, RAX, JIT_HEAD);
    byte(e, 0xff), byte(e, 0xe0); /* jmp rax */
    patch(e, no, e->p);
    leave(e, 0, rec, 0);
}

_Static_assert(offsetof(struct dinsn, h) == 0, "chain compares the record's first quadword");

/* The words the translator knows (plain handlers): straight ones, and the in-page branches
 * that may end a translation. */
static int translatable(unsigned h)
{
    switch (h) {
    case H_ADD: case H_SUB: case H_AND: case H_OR: case H_XOR: case H_ADDI: case H_ANDI: case H_ORI:
    case H_XORI: case H_SHLI: case H_SHRI: case H_SARI: case H_LUI: case H_MUL: case H_LD: case H_SD:
        return 1;
    default:
        return 0;
    }
}

static unsigned branch_cc(unsigned h)
{
    switch (h) { /* je, jne, jl, jge, jb, jae */
    case H_BEQ: return 0x84;
    case H_BNE: return 0x85;
    case H_BLT: return 0x8c;
    case H_BGE: return 0x8d;
    case H_BLTU: return 0x82;
    case H_BGEU: return 0x83;
    default: return 0;
    }
}

/* A data access of 8 bytes at r[rs1] + imm through the fast array at offset `array` of the fast
 * set, as run.c LOAD and STORE do it: the entry of the address's page, its tag against the
 * address's page and low three bits (a misaligned access never matches), then addend +
 * address.  A miss jumps to the returned rel32 (the word's exit).  Leaves the host address in
 * rax. */
static uint8_t *fast_address(struct emit *e, const struct dinsn *d, int32_t array)
{
    load_reg(e, RAX, d->rs1);
    if (d->imm)
        op_imm(e, ADD_EXT, RAX, d->imm);
    mov_rr(e, RCX, RAX);
    shift_imm(e, 5, RCX, PAGE_SHIFT - 4); /* the entry's offset: ((va >> 12) & FAST_MASK) * 16 */
    op_imm(e, AND_EXT, RCX, (int32_t)(FAST_MASK * sizeof(struct fast_entry)));
    mov_rr(e, R11, RAX);
    op_imm(e, AND_EXT, R11, (int32_t)(PAGE_MASK | 7));
    op_sib(e, 0x3b, R11, FS, RCX, array + (int32_t)offsetof(struct fast_entry, tag)); /* cmp r11, tag */
    uint8_t *miss = jump(e, 0x85);
    op_sib(e, 0x03, RAX, FS, RCX, array + (int32_t)offsetof(struct fast_entry, addend)); /* add rax, addend */
    rex_w(e, 0, 0, HITS); /* inc r9 */
    byte(e, 0xff);
    byte(e, 0xc0 | (HITS & 7));
    return miss;
}

_Static_assert(sizeof(struct fast_entry) == 16, "fast_address scales the page number by 16");

struct pending {
    uint8_t *at;         /* the rel32 to patch */
    const struct dinsn *rec;
    int32_t adjust;
    uintptr_t original;
};

/* Translate the run that starts at word i of page p into e; 0 if nothing could be. */
static void mark(struct p64_machine *m, struct dpage *p, size_t i);

static int emit_block(struct p64_machine *m, struct emit *e, struct dpage *p, unsigned i)
{
    const void *jit_label = m->labels[H_JIT];
    struct pending out[BLOCK_WORDS + 2];
    unsigned nout = 0;
    const struct dinsn *d0 = &p->d[i];
    op_mem(e, MOV_LOAD, BUDGET, IO, (int32_t)offsetof(struct jit_io, n));
    op_mem(e, MOV_LOAD, HITS, IO, (int32_t)offsetof(struct jit_io, hits));
    /* the head: a straight run is charged when it is entered (run.c NEXT); a budget that cannot
     * pay it leaves before the first word, for the interpreter's short_run */
    uint8_t *head = e->p;
    if (head != e->end - BLOCK_BYTES + JIT_HEAD)
        return 0; /* chain's jumps land at JIT_HEAD */
    op_imm(e, SUB_EXT, BUDGET, (int32_t)d0->run);
    out[nout++] = (struct pending){jump(e, 0x8c), d0, (int32_t)d0->run, JIT_ORIGINAL};
    unsigned k = i;
    for (; k < DPAGE_WORDS && k - i < BLOCK_WORDS && translatable(p->plain[k]); k++) {
        const struct dinsn *d = &p->d[k];
        switch (p->plain[k]) {
        case H_ADD: case H_SUB: case H_AND: case H_OR: case H_XOR: {
            static const uint8_t opc[] = {[H_ADD] = 0x03, [H_SUB] = 0x2b, [H_AND] = 0x23, [H_OR] = 0x0b, [H_XOR] = 0x33};
            load_reg(e, RAX, d->rs1);
            op_mem(e, opc[p->plain[k]], RAX, REGS, GUEST(d->rs2));
            store_reg(e, RAX, d->rd);
            break;
        }
        case H_MUL:
            load_reg(e, RAX, d->rs1);
            rex_w(e, RAX, 0, REGS); /* imul rax, [rdi + disp32] */
            byte(e, 0x0f), byte(e, 0xaf), byte(e, 0x80 | (REGS & 7));
            u32(e, (uint32_t)GUEST(d->rs2));
            store_reg(e, RAX, d->rd);
            break;
        case H_ADDI: case H_ANDI: case H_ORI: case H_XORI: {
            /* the immediate as the interpreter uses it: imm sign-extended to 64 bits (IMM) */
            static const uint8_t ext[] = {[H_ADDI] = ADD_EXT, [H_ANDI] = AND_EXT, [H_ORI] = OR_EXT, [H_XORI] = XOR_EXT};
            load_reg(e, RAX, d->rs1);
            op_imm(e, ext[p->plain[k]], RAX, d->imm);
            store_reg(e, RAX, d->rd);
            break;
        }
        case H_SHLI: case H_SHRI: case H_SARI:
            load_reg(e, RAX, d->rs1);
            shift_imm(e, p->plain[k] == H_SHLI ? 4 : p->plain[k] == H_SHRI ? 5 : 7, RAX, (unsigned)d->imm & 63);
            store_reg(e, RAX, d->rd);
            break;
        case H_LUI:
            op_mem(e, 0xc7, 0, REGS, GUEST(d->rd)); /* mov qword [rdi + disp], imm32 */
            u32(e, (uint32_t)d->imm);
            break;
        case H_LD: {
            uint8_t *miss = fast_address(e, d, (int32_t)offsetof(struct fast_set, rd));
            out[nout++] = (struct pending){miss, d, (int32_t)d->run, JIT_ORIGINAL};
            op_mem(e, MOV_LOAD, RAX, RAX, 0);
            store_reg(e, RAX, d->rd);
            break;
        }
        case H_SD: {
            load_reg(e, R10, d->rs2);
            uint8_t *miss = fast_address(e, d, (int32_t)offsetof(struct fast_set, wr));
            out[nout++] = (struct pending){miss, d, (int32_t)d->run, JIT_ORIGINAL};
            op_mem(e, MOV_STORE, R10, RAX, 0);
            break;
        }
        default:
            e->ok = 0;
            break;
        }
    }
    if (k == i)
        return 0;
    unsigned cc = k < DPAGE_WORDS ? branch_cc(p->plain[k]) : 0;
    if (k < DPAGE_WORDS && k - i < BLOCK_WORDS && (cc || p->plain[k] == H_JMP)) {
        /* the run's last word, its tick charged with the run: the target's run is charged by
         * the interpreter's NEXT, or by the head when it is the translation's own first word */
        const struct dinsn *d = &p->d[k];
        const struct dinsn *t = (const struct dinsn *)(const void *)((const char *)d + d->imm);
        uint8_t *taken;
        if (cc) {
            load_reg(e, RAX, d->rs1);
            op_mem(e, 0x3b, RAX, REGS, GUEST(d->rs2));
            taken = jump(e, cc);
        } else {
            taken = jump(e, 0);
        }
        if (t == d0) {
            patch(e, taken, head);
        } else {
            out[nout++] = (struct pending){taken, t, 0, 0};
            mark(m, p, (size_t)(t - p->d)); /* the code takes the branch: the interpreter will not */
        }
        if (cc) {
            mark(m, p, k + 1);
            chain(e, d + 1, jit_label);
        }
    } else {
        /* a word the translator does not know, in the same run (or the sentinel): the
         * interpreter dispatches it with the run's ticks as they were charged */
        leave(e, (int32_t)p->d[k].run, &p->d[k], 0);
    }
    for (unsigned x = 0; x < nout; x++) {
        patch(e, out[x].at, e->p);
        if (out[x].original)
            leave(e, out[x].adjust, out[x].rec, out[x].original);
        else
            chain(e, out[x].rec, jit_label);
    }
    return e->ok;
}

struct jit *jit_create(void)
{
    const char *s = getenv("P64_TRANSLATE");
    uint64_t threshold = DEFAULT_THRESHOLD;
    if (s && *s) {
        char *end;
        threshold = strtoull(s, &end, 10);
        if (*end || *s < '0' || *s > '9')
            return NULL; /* "off", or anything but a number */
    }
    struct jit *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    void *buf = mmap(NULL, JIT_BYTES, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        free(j);
        return NULL;
    }
    j->buf = buf;
    j->threshold = threshold;
    return j;
}

void jit_destroy(struct jit *j)
{
    if (!j)
        return;
    munmap(j->buf, JIT_BYTES);
    free(j);
}


/* The interpreter took an in-page branch to ip (run.c TAKEN_NEXT): a translatable word there
 * starts counting its executions. */
void jit_mark(struct p64_machine *m, struct dinsn *dp, struct dinsn *ip)
{
    if (dp == m->scratch || dp == &m->stub || m->jit->broken)
        return;
    mark(m, (struct dpage *)(void *)dp, (size_t)(ip - dp));
}

/* Word i of page p, a translatable run's first, starts counting its executions (H_HOT). */
static void mark(struct p64_machine *m, struct dpage *p, size_t i)
{
    if (i >= DPAGE_WORDS)
        return;
    struct dinsn *d = &p->d[i];
    if (d->h != m->labels[p->hid[i]] || d->xl)
        return; /* marked already, or retired (xl 1) */
    if (!translatable(p->plain[i])) {
        d->xl = 1; /* not a run the translator knows: the interpreter need not ask again */
        return;
    }
    d->h = m->labels[H_HOT];
    d->xl = 0;
    p->njit++;
}

/* Every word of page p the translator marked runs by its own handler again. */
void jit_drop_page(struct p64_machine *m, struct dpage *p)
{
    if (!p->njit)
        return;
    const void *hot = m->labels[H_HOT], *jit = m->labels[H_JIT];
    for (unsigned i = 0; i < DPAGE_WORDS; i++)
        if (p->d[i].h == hot || p->d[i].h == jit)
            p->d[i].h = m->labels[p->hid[i]], p->d[i].xl = 0;
    p->njit = 0;
}

/* Word i of page p (H_JIT) runs by its own handler until it is decoded again (xl 1 keeps
 * jit_mark away): its translation gave it back at once JIT_IDLE times in a row (a first access
 * that misses at every entry pays the call and the return for nothing).  Only how fast the word
 * runs changes. */
void jit_retire(struct p64_machine *m, struct dpage *p, unsigned i)
{
    p->d[i].h = m->labels[p->hid[i]];
    p->d[i].xl = 1;
}

static void drop_all(struct p64_machine *m)
{
    for (uint32_t i = 0; i < m->ndecoded; i++)
        jit_drop_page(m, m->dpages[m->dlist[i]]);
    m->jit->used = 0;
}

/* Translate the run at word i of page p (marked H_HOT): 1 when its first word is now H_JIT. */
static int jit_translate(struct p64_machine *m, struct dpage *p, unsigned i)
{
    struct jit *j = m->jit;
    struct dinsn *d = &p->d[i];
    if (j->broken)
        goto fail;
    if (JIT_BYTES - j->used < BLOCK_BYTES)
        drop_all(m); /* the buffer is full: every translation goes, this one's word with them */
    if (mprotect(j->buf, JIT_BYTES, PROT_READ | PROT_WRITE))
        goto fail;
    struct emit e = {j->buf + j->used, j->buf + j->used + BLOCK_BYTES, 1};
    uint8_t *code = e.p;
    int ok = emit_block(m, &e, p, i);
    if (mprotect(j->buf, JIT_BYTES, PROT_READ | PROT_EXEC)) {
        j->broken = 1; /* W^X: code that cannot be made executable is never entered */
        drop_all(m);
        return 0;
    }
    if (!ok)
        goto fail;
    j->used += (size_t)(e.p - code);
    j->used = (j->used + 15) & ~(size_t)15;
    if (d->h != m->labels[H_HOT] && d->h != m->labels[H_JIT])
        p->njit++; /* dropped with the others when the buffer was full */
    d->h = m->labels[H_JIT];
    d->xl = (uintptr_t)code;
    p->idle[i] = 0;
    return 1;
fail:
    if (d->h == m->labels[H_HOT] || d->h == m->labels[H_JIT]) {
        d->h = m->labels[p->hid[i]];
        d->xl = 0;
    }
    return 0;
}

/* Word i of page p (H_HOT) runs once more: 1 when it is now translated (H_JIT).  Whatever it
 * returns, translations may have been dropped (a full buffer), so the caller forgets any
 * handler it kept (run.c CODE_MAY_CHANGE). */
int jit_hot(struct p64_machine *m, struct dpage *p, unsigned i)
{
    if (++p->d[i].xl <= m->jit->threshold)
        return 0;
    return jit_translate(m, p, i);
}

#else /* not x86-64: the interpreter runs alone */

struct jit *jit_create(void) { return NULL; }
void jit_destroy(struct jit *j) { (void)j; }
int jit_hot(struct p64_machine *m, struct dpage *p, unsigned i) { (void)m, (void)p, (void)i; return 0; }
void jit_mark(struct p64_machine *m, struct dinsn *dp, struct dinsn *ip) { (void)m, (void)dp, (void)ip; }
void jit_drop_page(struct p64_machine *m, struct dpage *p) { (void)m, (void)p; }
void jit_retire(struct p64_machine *m, struct dpage *p, unsigned i) { (void)m, (void)p, (void)i; }

#endif
