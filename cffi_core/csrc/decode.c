/* The decoder (§3, driven by the generated instruction table) and the cache of predecoded
 * pages, one per physical page, that self-modifying code and host writes keep coherent (§15). */
#include <stdlib.h>

#include "core.h"

struct opinfo {
    uint8_t valid, fmt;
    uint16_t handler;
    uint32_t used; /* bits 23:0 the format may set; any other set bit is an invalid encoding */
};

static const struct opinfo optab[256] = {
#define X(name, NAME, opcode, fmt, priv, sens, used) [opcode] = {1, fmt, H_##NAME, used},
    P64_INSNS(X)
#undef X
};

static int control_register_exists(unsigned crn)
{
#define X(n) (crn == (n)) ||
    return P64_CONTROL_REGISTERS(X) 0;
#undef X
}

static int16_t s16(uint32_t w) { return (int16_t)(uint16_t)(w & 0xffff); }
static int32_t s24(uint32_t w) { return (int32_t)((w & 0xffffff) << 8) >> 8; }

/* A compare-and-branch or jmp: an in-page target becomes an offset in bytes of decoded records,
 * resolved here (the handler adds it to ip without scaling); another page goes through a far
 * handler that enters it (§8.2). */
static unsigned resolve_branch(struct dinsn *d, unsigned handler, int32_t words, unsigned idx,
                               unsigned far)
{
    int64_t target = (int64_t)idx + words;
    if (target >= 0 && target < DPAGE_WORDS) {
        d->imm = words * (int32_t)sizeof(struct dinsn);
        return handler;
    }
    d->imm = words * 4;
    return far;
}

/* Decode word w at index idx of its page into d; invalid encodings become #UD (§3).  Returns
 * the handler it was given. */
unsigned decode_word(struct dinsn *d, uint32_t w, unsigned idx, const void *const *labels)
{
    unsigned op = w >> 24, a = (w >> 20) & 15, b = (w >> 16) & 15, c = (w >> 12) & 15;
    const struct opinfo *oi = &optab[op];
    unsigned h = oi->handler;
    memset(d, 0, sizeof *d);
    if (!oi->valid || (w & 0xffffff & ~oi->used)) {
        d->h = labels[H_INVALID];
        return H_INVALID;
    }
    switch (oi->fmt) {
    case P64_FMT_R: d->rd = (uint8_t)a, d->rs1 = (uint8_t)b, d->rs2 = (uint8_t)c; break;
    case P64_FMT_I: case P64_FMT_L: d->rd = (uint8_t)a, d->rs1 = (uint8_t)b, d->imm = s16(w); break;
    case P64_FMT_IZ: d->rd = (uint8_t)a, d->rs1 = (uint8_t)b, d->imm = (int32_t)(w & 0xffff); break;
    case P64_FMT_SH: d->rd = (uint8_t)a, d->rs1 = (uint8_t)b, d->imm = (int32_t)(w & 63); break;
    case P64_FMT_U: d->rd = (uint8_t)a, d->imm = (int32_t)((w & 0xfffff) << 12); break;
    case P64_FMT_S: d->rs2 = (uint8_t)a, d->rs1 = (uint8_t)b, d->imm = s16(w); break;
    case P64_FMT_B:
        d->rs1 = (uint8_t)a, d->rs2 = (uint8_t)b, d->aux = (uint8_t)(op - P64_OP_BEQ);
        h = resolve_branch(d, h, s16(w), idx, H_BFAR);
        break;
    case P64_FMT_J:
        if (op == P64_OP_JMP)
            h = resolve_branch(d, h, s24(w), idx, H_JFAR);
        else
            d->imm = s24(w) * 4; /* call always enters its target (§8.2) */
        break;
    case P64_FMT_RS: d->rs1 = (uint8_t)b; break;
    case P64_FMT_RD: d->rd = (uint8_t)a; break;
    case P64_FMT_RR: d->rd = (uint8_t)a, d->rs1 = (uint8_t)b; break;
    case P64_FMT_WR: d->rs1 = (uint8_t)b, d->rs2 = (uint8_t)c; break;
    case P64_FMT_INT: d->imm = (int32_t)(w & 0xff); break;
    case P64_FMT_H: d->imm = (int32_t)(w & 0xffff); break;
    case P64_FMT_PIN: /* aux keeps rd as written: the exit names it to the host */
        d->rd = d->aux = (uint8_t)a, d->rs1 = (uint8_t)b, d->imm = (int32_t)(w & 0xffff);
        break;
    case P64_FMT_POUT: d->rs2 = (uint8_t)a, d->rs1 = (uint8_t)b, d->imm = (int32_t)(w & 0xffff); break;
    case P64_FMT_MTCR: d->aux = (uint8_t)a, d->rs1 = (uint8_t)b; break;
    case P64_FMT_MFCR: d->rd = (uint8_t)a, d->aux = (uint8_t)b; break;
    case P64_FMT_M: d->rs1 = (uint8_t)b, d->imm = s16(w); break;
    default: break;
    }
    if ((oi->fmt == P64_FMT_MTCR || oi->fmt == P64_FMT_MFCR) && !control_register_exists(d->aux)) {
        d->h = labels[H_INVALID];
        return H_INVALID;
    }
    if (d->rd == 0)
        d->rd = SINK; /* bodies write rd unconditionally: r0 stays zero */
    d->h = labels[h];
    return h;
}

/* Pairs (core.h P64_PAIRS): the places of the first and of the second instructions. */
enum {
#define X(A, Y) FIRST_##A,
    P64_FUSE_FIRST(X, _) N_FIRST
#undef X
};
enum {
#define X(A, B) SECOND_##B,
    P64_FUSE_SECOND(X, _) N_SECOND
#undef X
};
/* fuse_first[h], fuse_second[h]: 1 + the place of handler h, 0 where it has none */
static const uint8_t fuse_first[H_PLAIN] = {
#define X(A, Y) [H_##A] = 1 + FIRST_##A,
    P64_FUSE_FIRST(X, _)
#undef X
};
static const uint8_t fuse_second[H_PLAIN] = {
#define X(A, B) [H_##B] = 1 + SECOND_##B,
    P64_FUSE_SECOND(X, _)
#undef X
};
_Static_assert(H_PLAIN + 1 + N_FIRST * N_SECOND == H_HOT, "the pairs follow H_PLAIN, row by row");
_Static_assert(H_COUNT <= UINT16_MAX, "struct dpage.hid holds every handler");
_Static_assert(H_PLAIN <= UINT8_MAX, "struct dpage.plain holds every single instruction's handler");

/* Word i runs with the word after it as one handler when the two make a pair; the second keeps
 * its own record and handler for the jumps that land on it, and is itself the first of the
 * next pair if it can be.  Fusion depends on the next word: a store that re-decodes words
 * fuses the word before them again. */
static void fuse(struct dpage *p, unsigned i, const void *const *labels)
{
    unsigned a = p->plain[i], b = p->plain[i + 1];
    unsigned f = a < H_PLAIN ? fuse_first[a] : 0, s = b < H_PLAIN ? fuse_second[b] : 0;
    unsigned h = f && s ? H_PLAIN + 1 + (f - 1) * N_SECOND + (s - 1) : a;
    p->hid[i] = (uint16_t)h;
    p->d[i].h = labels[h];
}

static const uint8_t straight[H_PLAIN] = {
#define X(NAME) [H_##NAME] = 1,
    P64_STRAIGHT(X)
#undef X
};

/* Is handler h (enum handler_id) that of a straight instruction (core.h P64_STRAIGHT)? */
int straight_handler(unsigned h)
{
    return h < H_PLAIN && straight[h];
}

/* struct dinsn.run of words last, last - 1, ... down to the start of the straight run that holds
 * word `first` (or the page's start): a straight word's run goes on into the next word's, any
 * other word is a run of its own tick, and the sentinel takes none. */
static void set_runs(struct dpage *p, unsigned first, unsigned last)
{
    for (unsigned i = last + 1; i-- > 0;) {
        int s = straight_handler(p->plain[i]);
        p->d[i].run = s ? 1 + p->d[i + 1].run : 1;
        if (i < first && !s)
            break; /* the words before it keep their runs */
    }
}

/* ---- the page cache ---- */

static void decode_page(struct p64_machine *m, struct dpage *p)
{
    const uint8_t *src = m->mem + (p->ppn << PAGE_SHIFT);
    for (unsigned i = 0; i < DPAGE_WORDS; i++)
        p->plain[i] = (uint8_t)decode_word(&p->d[i], rd32(src + 4 * i), i, m->labels);
    memset(&p->d[DPAGE_WORDS], 0, sizeof p->d[DPAGE_WORDS]);
    p->d[DPAGE_WORDS].h = m->labels[H_ENTER]; /* falling off the page enters the next one */
    p->plain[DPAGE_WORDS] = H_ENTER;
    p->hid[DPAGE_WORDS] = H_ENTER;
    p->njit = 0; /* every record was written afresh: no translation of the page's last use is reachable */
    for (unsigned i = 0; i < DPAGE_WORDS; i++)
        fuse(p, i, m->labels);
    set_runs(p, 0, DPAGE_WORDS - 1);
}

static void unlink_page(struct p64_machine *m, struct dpage *p)
{
    jit_drop_page(m, p);
    fast_forget_dpage(m, p->d);
    uint32_t last = --m->ndecoded;
    m->dlist[p->slot] = m->dlist[last];
    m->dpages[m->dlist[last]]->slot = p->slot;
    m->dpages[p->ppn] = NULL;
    p->next = m->free_pages;
    m->free_pages = p;
}

/* Drop every decoded page (they go back to the free list).  No exec entry of either row of fast
 * sets may keep pointing at one: the row not in use (guest mode's, or the host's during a
 * vmrun) is used again by the next entry or exit (docs/vmx.md V.7). */
void dcache_clear(struct p64_machine *m)
{
    for (unsigned r = 0; r < 2; r++)
        for (unsigned c = 0; c < 4; c++)
            for (unsigned i = 0; i < FAST_N; i++)
                m->fast_sets[r][c].ex[i].tag = FAST_EMPTY, m->fast_sets[r][c].ex[i].dp = NULL;
    while (m->ndecoded) {
        struct dpage *p = m->dpages[m->dlist[--m->ndecoded]];
        jit_drop_page(m, p);
        m->dpages[p->ppn] = NULL;
        p->next = m->free_pages;
        m->free_pages = p;
    }
}

void dcache_free(struct p64_machine *m)
{
    if (m->dpages && m->dlist)
        dcache_clear(m);
    while (m->free_pages) {
        struct dpage *p = m->free_pages;
        m->free_pages = p->next;
        free(p);
    }
}

static struct dpage *new_page(struct p64_machine *m)
{
    if (m->ndecoded == DPAGE_MAX)
        dcache_clear(m);
    struct dpage *p = m->free_pages;
    if (p) {
        m->free_pages = p->next;
        return p;
    }
    p = malloc(sizeof *p);
    if (!p) { /* the spare made at create is somewhere: clearing the cache frees it */
        dcache_clear(m);
        p = m->free_pages;
        m->free_pages = p->next;
    }
    return p;
}

/* The decoded code of physical page ppn, decoding it on first use.  Only called while fetch
 * enters a page, when nothing else points into the cache. */
struct dinsn *dcache_page(struct p64_machine *m, uint64_t ppn)
{
    struct dpage *p = m->dpages[ppn];
    if (LIKELY(p != NULL))
        return p->d;
    p = new_page(m);
    p->ppn = ppn;
    p->slot = m->ndecoded;
    m->dlist[m->ndecoded++] = ppn;
    m->dpages[ppn] = p;
    decode_page(m, p);
    fast_forget_code_page(m, ppn);
    m->ctr.pages_decoded++;
    return p->d;
}

/* A store of size bytes at pa landed in a decoded page: decode the words it touched again,
 * in place, so the next fetch of them sees the new code (and pointers into the page stay
 * valid while it runs). */
void dcache_store(struct p64_machine *m, uint64_t pa, unsigned size)
{
    struct dpage *p = m->dpages[pa >> PAGE_SHIFT];
    const uint8_t *page = m->mem + (pa & PAGE_MASK);
    unsigned first = (unsigned)(pa & PAGE_OFFSET) >> 2, last = (unsigned)((pa + size - 1) & PAGE_OFFSET) >> 2;
    if (!m->labels) {
        unlink_page(m, p);
        return;
    }
    /* Translations are made of the page's records as they were (their fields, runs and fusion
     * are compiled into the code): all of the page's go before any record changes (§15). */
    jit_drop_page(m, p);
    for (unsigned i = first; i <= last; i++)
        p->plain[i] = (uint8_t)decode_word(&p->d[i], rd32(page + 4 * i), i, m->labels);
    for (unsigned i = first ? first - 1 : 0; i <= last; i++)
        fuse(p, i, m->labels);
    set_runs(p, first, last); /* a word that became (or stopped being) straight moves a run's end */
    m->ctr.code_invalidations++;
}

/* The host wrote [pa, pa + len): drop the decoded pages it touched (between runs). */
void dcache_drop_range(struct p64_machine *m, uint64_t pa, uint64_t len)
{
    uint64_t first = pa >> PAGE_SHIFT, last = (pa + len - 1) >> PAGE_SHIFT;
    if (last - first >= m->ndecoded) { /* a long range: walk the decoded pages instead */
        for (uint32_t i = m->ndecoded; i-- > 0;) {
            uint64_t ppn = m->dlist[i];
            if (ppn >= first && ppn <= last) {
                unlink_page(m, m->dpages[ppn]);
                m->ctr.code_invalidations++;
            }
        }
        return;
    }
    for (uint64_t ppn = first; ppn <= last; ppn++)
        if (m->dpages[ppn]) {
            unlink_page(m, m->dpages[ppn]);
            m->ctr.code_invalidations++;
        }
}
