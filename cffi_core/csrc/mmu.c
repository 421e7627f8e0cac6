/* Linear-address accesses (§5.3), the page walk (§7), the modeled TLB (§8) and the host fast
 * arrays in front of it (§15); everything here is off the interpreter's hit path. */
#include <stdlib.h>

#include "core.h"

#define INDEX_BITS 9
#define INDEX_MASK 511u

/* ---- §7: the walk ---- */

/* §7.2: the bits of a present entry that must be zero at this level. */
static uint64_t reserved_bits(uint64_t entry, unsigned level)
{
    uint64_t bits = PTE_RESERVED;
    if (level == 1 || level == 4)
        bits |= PTE_PS;
    else if (entry & PTE_PS)
        bits |= level == 2 ? 0x1ff000ull : 0x3ffff000ull; /* a large frame is aligned */
    return bits;
}

/* §7.4: may an access of this kind at this CPL use a translation with these permissions? */
static int permitted(const struct p64_machine *m, unsigned perm, unsigned access, unsigned cpl)
{
    if (cpl == 3 && !(perm & PERM_U))
        return 0;
    if (access == P64_ACCESS_WRITE && (!(perm & PERM_W) && (cpl == 3 || (m->cpu.cr0 & CR0_WP))))
        return 0;
    if (perm & (PERM_NO_NW | PERM_NO_NX)) /* the nested half of a combined translation (vmx.md V.6) */
        if ((access == P64_ACCESS_WRITE && (perm & PERM_NO_NW)) || (access == P64_ACCESS_FETCH && (perm & PERM_NO_NX)))
            return 0;
    return !(access == P64_ACCESS_FETCH && (perm & PERM_NX));
}

static unsigned page_fault(struct p64_walk *w, unsigned access, unsigned cpl, unsigned causes)
{
    w->error_code = causes | (access == P64_ACCESS_WRITE ? PF_W : 0) |
                    (access == P64_ACCESS_FETCH ? PF_I : 0) | (cpl == 3 ? PF_U : 0);
    return w->fault = V_PF;
}

/* §5.3 step 3: bits 63:(w-1) all equal, w = 30, 39 or 48. */
static int canonical(uint64_t va, unsigned levels)
{
    int64_t top = (int64_t)va >> (PAGE_SHIFT + INDEX_BITS * levels - 1);
    return top == 0 || top == -1;
}

static unsigned levels_of(const struct p64_machine *m)
{
    return (unsigned)(m->cpu.cr4 & CR4_PL) + 2;
}

/* §7.3: read one entry per level from CR3 down to a leaf, then check the permissions the
 * levels combine to (W, U: AND; NX: OR).  Returns 0, V_PF (error code in w) or V_MC. */
static unsigned walk_tables(struct p64_machine *m, uint64_t va, unsigned access, unsigned cpl,
                            struct p64_walk *w)
{
    uint64_t table = m->cpu.cr3 & CR3_FRAME, anded = ~0ull, ored = 0, entry = 0;
    unsigned level = levels_of(m);
    memset(w, 0, sizeof *w);
    w->writable = w->user = 1;
    for (;; level--) {
        uint64_t addr = table + 8 * ((va >> (PAGE_SHIFT + INDEX_BITS * (level - 1))) & INDEX_MASK);
        if (addr >= m->mem_size)
            return w->fault = V_MC; /* a walk memory reference beyond RAM */
        entry = rd64(m->mem + addr);
        w->entry_addr[w->levels] = addr;
        w->entry[w->levels++] = entry;
        if (!(entry & PTE_P))
            return page_fault(w, access, cpl, 0);
        if (entry & reserved_bits(entry, level))
            return page_fault(w, access, cpl, PF_P | PF_RSVD);
        anded &= entry;
        ored |= entry;
        if (level == 1 || (entry & PTE_PS))
            break;
        table = entry & PTE_FRAME;
    }
    unsigned perm = (anded & PTE_W ? PERM_W : 0) | (anded & PTE_U ? PERM_U : 0) | (ored & PTE_NX ? PERM_NX : 0);
    if (!permitted(m, perm, access, cpl))
        return page_fault(w, access, cpl, PF_P);
    uint64_t offset = (1ull << (PAGE_SHIFT + INDEX_BITS * (level - 1))) - 1;
    w->physical = (entry & PTE_FRAME & ~offset) | (va & offset);
    w->page_level = level;
    w->writable = !!(perm & PERM_W), w->user = !!(perm & PERM_U), w->nx = !!(perm & PERM_NX);
    return 0;
}

/* ---- docs/vmx.md V.6: nested tables and the two-dimensional walk ---- */

static unsigned ept_levels_of(uint64_t eptp)
{
    return (unsigned)(eptp & 3) + 2;
}

/* V.6: the bits of a nested entry that make it a misconfiguration (reserved, or W without R). */
static int nested_misconfigured(uint64_t entry, unsigned level)
{
    return (entry & (EPT_R | EPT_W)) == EPT_W || (entry & reserved_bits(entry, level)) != 0;
}

/* Walk the nested tables of root_ptr (EPT-pointer format) for gpa.  Returns 0 with hpa and the
 * combined R/W/X in perm; 1 not mapped; 2 mapped without the permission `need`; 3 a
 * misconfiguration (also a table or frame beyond RAM).  refs counts the entries read. */
int nested_walk(struct p64_machine *m, uint64_t root_ptr, uint64_t gpa, unsigned need, uint64_t *hpa,
                unsigned *perm, uint64_t *refs)
{
    unsigned level = ept_levels_of(root_ptr), p = (unsigned)(EPT_R | EPT_W | EPT_X);
    uint64_t table = root_ptr & CR3_FRAME, entry = 0;
    *perm = 0;
    if (gpa >> (PAGE_SHIFT + INDEX_BITS * level))
        return 1; /* beyond what the nested tables map */
    const int cache = m->guest && root_ptr == m->vmx.eptp && has_feature(m, P64_F_PWC);
    if (cache) {
        for (unsigned l = 2; l <= level; l++) {
            const struct pwc_entry *c = vmx_pwc_find(m, 1, l, gpa >> (PAGE_SHIFT + INDEX_BITS * (l - 1)), root_ptr);
            if (c) {
                m->ctr.pwc_hits++;
                table = c->value & PTE_FRAME, p = c->perm, level = l - 1;
                break;
            }
        }
    }
    for (;; level--) {
        uint64_t addr = table + 8 * ((gpa >> (PAGE_SHIFT + INDEX_BITS * (level - 1))) & INDEX_MASK);
        if (addr >= m->mem_size)
            return 3;
        entry = rd64(m->mem + addr);
        (*refs)++;
        if (LIKELY((entry & (PTE_RESERVED | PTE_PS | EPT_R)) == EPT_R)) { /* V.6: present, clean, not large, at once */
            p &= (unsigned)(entry & (EPT_R | EPT_W | EPT_X));
            if (level == 1)
                break;
            if (cache)
                vmx_pwc_insert(m, 1, level, gpa >> (PAGE_SHIFT + INDEX_BITS * (level - 1)), root_ptr, entry, p);
            table = entry & PTE_FRAME;
            continue;
        }
        if (nested_misconfigured(entry, level))
            return 3;
        if (!(entry & EPT_R))
            return 1;
        p &= (unsigned)(entry & (EPT_R | EPT_W | EPT_X));
        if (level == 1 || (entry & PTE_PS))
            break;
        if (cache)
            vmx_pwc_insert(m, 1, level, gpa >> (PAGE_SHIFT + INDEX_BITS * (level - 1)), root_ptr, entry, p);
        table = entry & PTE_FRAME;
    }
    uint64_t offset = (1ull << (PAGE_SHIFT + INDEX_BITS * (level - 1))) - 1;
    *hpa = (entry & PTE_FRAME & ~offset) | (gpa & offset);
    *perm = p;
    if (*hpa >= m->mem_size)
        return 3;
    return (p & need) == need ? 0 : 2;
}

static unsigned need_of(unsigned access)
{
    return access == P64_ACCESS_WRITE ? (unsigned)EPT_W : access == P64_ACCESS_FETCH ? (unsigned)EPT_X : (unsigned)EPT_R;
}

/* One guest-physical reference of guest mode with ept: the nested TLB (pwc), else a nested
 * walk.  final: the access is to the final address (V.5 bit 8), else to a guest paging entry.
 * 0 with the fault set to VEC_VMEXIT and the exit described. */
static int nested_translate(struct p64_machine *m, uint64_t gpa, unsigned access, int final, uint64_t va,
                            int va_valid, uint64_t *hpa, unsigned *perm, uint64_t *refs)
{
    const unsigned need = need_of(access);
    const uint64_t eptp = m->vmx.eptp, gpn = gpa >> PAGE_SHIFT;
    const int cached = has_feature(m, P64_F_PWC);
    if (cached) {
        for (unsigned i = 0; i < NTLB_ENTRIES; i++) {
            struct ntlb_entry *e = &m->nested.ntlb[i];
            if (e->valid && e->gpn == gpn && e->eptp == eptp && (e->perm & need) == need) {
                m->ctr.ntlb_hits++;
                *hpa = (e->hpn << PAGE_SHIFT) | (gpa & PAGE_OFFSET);
                *perm = e->perm;
                return 1;
            }
        }
        m->ctr.ntlb_misses++;
    }
    unsigned p = 0;
    int rc = nested_walk(m, eptp, gpa, need, hpa, &p, refs);
    if (rc == 0) {
        *perm = p;
        if (cached) { /* FIFO over the whole nested TLB */
            struct ntlb_entry *n = &m->nested.ntlb[m->nested.ntlb_next];
            m->nested.ntlb_next = (m->nested.ntlb_next + 1) % NTLB_ENTRIES;
            n->valid = 1, n->gpn = gpn, n->hpn = *hpa >> PAGE_SHIFT, n->eptp = eptp, n->perm = p;
        }
        return 1;
    }
    if (rc == 3)
        return vmx_ept_fault(m, P64_VMEXIT_EPT_MISCONFIG, 0, gpa, va, va_valid), 0;
    uint64_t qual = (access == P64_ACCESS_WRITE ? 2u : access == P64_ACCESS_FETCH ? 4u : 1u) |
                    ((uint64_t)(rc == 2 ? p : 0) << 3) | ((uint64_t)(va_valid != 0) << 7) | ((uint64_t)(final != 0) << 8);
    return vmx_ept_fault(m, P64_VMEXIT_EPT_VIOLATION, qual, gpa, va, va_valid), 0;
}

/* V.6: the walk of guest mode with ept, each guest-physical reference through the nested
 * tables: n*m + n + m references without caches (Bhargava et al. 2008).  Order of checks:
 * guest entries (each read needs nested R), the guest's permissions (#PF), the final
 * address (nested R, W or X), then the A/D writes (nested W on the entry's page).  Returns 0,
 * V_PF or VEC_VMEXIT; nested_perm gets the final address's nested R/W/X. */
static unsigned walk_2d(struct p64_machine *m, uint64_t va, unsigned access, unsigned cpl, int set_ad,
                        struct p64_walk *w, unsigned *nested_perm)
{
    uint64_t refs = 0, hpa = 0, anded = ~0ull, ored = 0, entry = 0;
    uint64_t entry_gpa[4] = {0, 0, 0, 0}; /* guest-physical address of each entry read */
    unsigned np = 0, f = 0, entry_np[4] = {0, 0, 0, 0}, upper_perm[4] = {0, 0, 0, 0}, upper_level[4] = {0, 0, 0, 0};
    /* the scalar fields only: the entries are read up to w->levels (a memset is a rep stos here) */
    w->physical = w->error_code = 0;
    w->fault = w->levels = w->page_level = w->nx = 0;
    w->writable = w->user = 1;
    m->ctr.walks_2d++;
    if (!(m->cpu.cr0 & CR0_PG)) { /* guest paging off: the linear address is guest-physical */
        if (!nested_translate(m, va, access, 1, va, 1, &hpa, &np, &refs))
            f = VEC_VMEXIT;
        w->physical = hpa, w->page_level = 1, *nested_perm = np;
        m->ctr.walk_refs_2d += refs;
        return f;
    }
    const uint64_t tag = m->cpu.vm_tag;
    unsigned level = levels_of(m);
    uint64_t table = m->cpu.cr3 & CR3_FRAME;
    if (has_feature(m, P64_F_PWC))
        for (unsigned l = 2; l <= level; l++) {
            const struct pwc_entry *c = vmx_pwc_find(m, 0, l, va >> (PAGE_SHIFT + INDEX_BITS * (l - 1)), tag);
            if (c) {
                m->ctr.pwc_hits++;
                table = c->value & PTE_FRAME, level = l - 1;
                anded = (c->perm & PERM_W ? PTE_W : 0) | (c->perm & PERM_U ? PTE_U : 0) | ~(PTE_W | PTE_U);
                ored = c->perm & PERM_NX ? PTE_NX : 0;
                break;
            }
        }
    for (;; level--) {
        uint64_t gpa = table + 8 * ((va >> (PAGE_SHIFT + INDEX_BITS * (level - 1))) & INDEX_MASK);
        if (!nested_translate(m, gpa, P64_ACCESS_READ, 0, va, 1, &hpa, &np, &refs)) {
            f = VEC_VMEXIT;
            goto out;
        }
        entry = rd64(m->mem + hpa);
        refs++;
        entry_np[w->levels] = np, entry_gpa[w->levels] = gpa;
        w->entry_addr[w->levels] = hpa;
        w->entry[w->levels++] = entry;
        if (!(entry & PTE_P)) {
            f = page_fault(w, access, cpl, 0);
            goto out;
        }
        if (entry & reserved_bits(entry, level)) {
            f = page_fault(w, access, cpl, PF_P | PF_RSVD);
            goto out;
        }
        anded &= entry;
        ored |= entry;
        if (level == 1 || (entry & PTE_PS))
            break;
        /* what the page-walk cache may keep, once the walk has set A in it (below) */
        upper_perm[w->levels - 1] = (anded & PTE_W ? PERM_W : 0) | (anded & PTE_U ? PERM_U : 0) |
                                    (ored & PTE_NX ? PERM_NX : 0);
        upper_level[w->levels - 1] = level;
        table = entry & PTE_FRAME;
    }
    unsigned perm = (anded & PTE_W ? PERM_W : 0) | (anded & PTE_U ? PERM_U : 0) | (ored & PTE_NX ? PERM_NX : 0);
    if (!permitted(m, perm, access, cpl)) {
        f = page_fault(w, access, cpl, PF_P);
        goto out;
    }
    uint64_t offset = (1ull << (PAGE_SHIFT + INDEX_BITS * (level - 1))) - 1;
    uint64_t gpa = (entry & PTE_FRAME & ~offset) | (va & offset);
    if (!nested_translate(m, gpa, access, 1, va, 1, &hpa, &np, &refs)) {
        f = VEC_VMEXIT;
        goto out;
    }
    *nested_perm = np;
    w->physical = hpa;
    w->page_level = level;
    w->writable = !!(perm & PERM_W), w->user = !!(perm & PERM_U), w->nx = !!(perm & PERM_NX);
    if (set_ad)
        for (uint32_t i = 0; i < w->levels; i++) {
            uint64_t now = w->entry[i] | PTE_A | (access == P64_ACCESS_WRITE && i + 1 == w->levels ? PTE_D : 0);
            if (now == w->entry[i])
                continue;
            if (!(entry_np[i] & EPT_W)) { /* the walker's write to a guest paging entry (V.6) */
                uint64_t q = 2u | ((uint64_t)entry_np[i] << 3) | (1u << 7);
                vmx_ept_fault(m, P64_VMEXIT_EPT_VIOLATION, q, entry_gpa[i], va, 1); /* V.5: the entry's address */
                f = VEC_VMEXIT;
                goto out;
            }
            phys_write(m, w->entry_addr[i], 8, now);
            w->entry[i] = now;
            m->ctr.ad_updates++;
        }
    /* Only a completed walk fills the page-walk cache: an entry cached before its A bit was
     * written would let later walks skip the write the native walker makes (§7.5). */
    if (set_ad && has_feature(m, P64_F_PWC))
        for (uint32_t i = 0; i + 1 < w->levels; i++)
            vmx_pwc_insert(m, 0, upper_level[i], va >> (PAGE_SHIFT + INDEX_BITS * (upper_level[i] - 1)), tag,
                           w->entry[i], upper_perm[i]);
out:
    m->ctr.walk_refs_2d += refs;
    return f;
}

/* §7.5: set A in every entry used whose A is clear, and D in the leaf on a write. */
static void set_accessed_dirty(struct p64_machine *m, const struct p64_walk *w, int write, int count)
{
    for (uint32_t i = 0; i < w->levels; i++) {
        uint64_t now = w->entry[i] | PTE_A | (write && i + 1 == w->levels ? PTE_D : 0);
        if (now != w->entry[i]) {
            phys_write(m, w->entry_addr[i], 8, now);
            m->ctr.ad_updates += (uint64_t)count;
        }
    }
}

static unsigned walk(struct p64_machine *m, uint64_t va, unsigned access, unsigned cpl, int set_ad,
                     int count, struct p64_walk *w)
{
    unsigned f = walk_tables(m, va, access, cpl, w);
    if (count) {
        m->ctr.walks++;
        m->ctr.walk_refs += w->levels;
    }
    if (!f && set_ad)
        set_accessed_dirty(m, w, access == P64_ACCESS_WRITE, count);
    return f;
}

int p64_walk(struct p64_machine *m, uint64_t va, uint32_t access, uint32_t cpl, uint32_t set_ad,
             struct p64_walk *out)
{
    if (access > P64_ACCESS_FETCH)
        return p64_error(m, P64_ERR_STATE, "walk: access = %u: must be 0 (read), 1 (write) or 2 (fetch)", access);
    if (cpl > 3)
        return p64_error(m, P64_ERR_STATE, "walk: cpl = %u: must be 0..3", cpl);
    if (!check_state(m))
        return P64_ERR_STATE;
    if (!(m->cpu.cr0 & CR0_PG)) {
        memset(out, 0, sizeof *out);
        out->physical = va, out->writable = out->user = 1;
        out->fault = va >= m->mem_size ? V_MC : 0;
        return P64_OK;
    }
    if (!canonical(va, levels_of(m))) {
        memset(out, 0, sizeof *out);
        out->writable = out->user = 1;
        out->fault = V_GP;
        return P64_OK;
    }
    if (!walk(m, va, access, cpl, set_ad != 0, 0, out) && out->physical >= m->mem_size)
        out->fault = V_MC;
    return P64_OK;
}

/* ---- the host fast arrays (§15): only ever translations the modeled TLB holds ----
 * Two rows of four sets: the host's and guest mode's (docs/vmx.md V.7).  The guest row holds
 * the translations of one guest tag at a time (vmx.fast_owner). */

/* Empty the sets of CPLs from..3 of a row that were filled since they were last emptied
 * (fast_dirty: a bit per row and CPL), so that the flushes of every VM entry and exit without
 * vpid (docs/vmx.md V.7) cost only what was used; gs: their GS arrays too (which a change of
 * the segment limit leaves valid: GS accesses are not bounded by it, §5.4). */
static void fast_clear_row(struct p64_machine *m, unsigned r, unsigned from, int gs)
{
    struct fast_set *row = m->fast_sets[r];
    for (unsigned c = from; c < 4; c++) {
        unsigned bit = 1u << (4 * r + c), gbit = FAST_DIRTY_GS << (4 * r + c);
        if (m->fast_dirty & bit) {
            m->fast_dirty &= ~bit;
            for (unsigned i = 0; i < FAST_N; i++)
                row[c].rd[i].tag = row[c].wr[i].tag = row[c].ex[i].tag = FAST_EMPTY;
        }
        if (gs && (m->fast_dirty & gbit)) {
            m->fast_dirty &= ~gbit;
            for (unsigned i = 0; i < FAST_N; i++)
                row[c].grd[i].tag = row[c].gwr[i].tag = FAST_EMPTY;
        }
    }
}

void fast_clear_all(struct p64_machine *m)
{
    fast_clear_row(m, 0, 0, 1);
    fast_clear_row(m, 1, 0, 1);
    m->vmx.fast_owner = 0;
}

/* The current row serves the current context only (§15: the fast arrays hold what the modeled
 * TLB holds, or with translation off the identity).  Entries made without translation never
 * serve a translating context nor the reverse, and the sets of CPL 1..3 were filled under the
 * current segment limit (§5.3 step 2).  The guest row outlives a VMCS: another VMCS of the same
 * tag, or the same one after the host rewrote its state, finds it filled (docs/vmx.md V.7).
 * Called wherever translation or the limit may have changed. */
void fast_sync(struct p64_machine *m)
{
    unsigned r = m->fast == m->fast_sets[1], flat = !m->translating;
    if (m->fast_flat[r] != flat) {
        fast_clear_row(m, r, 0, 1);
        m->fast_flat[r] = (uint8_t)flat;
    } else if (m->fast_limit[r] != m->cpu.seglimit || m->fast_cslimit[r] != fetch_limit(m))
        fast_clear_row(m, r, 1, 0);
    m->fast_limit[r] = m->cpu.seglimit;
    m->fast_cslimit[r] = fetch_limit(m);
}

static struct fast_set *row_of(struct p64_machine *m, uint32_t tag)
{
    return m->fast_sets[tag >= GUEST_TAG_BASE];
}

/* Switch to the host's or the guest's row; a guest row filled for another tag is emptied. */
void fast_enter_set(struct p64_machine *m, int guest)
{
    m->fast = m->fast_sets[guest != 0];
    if (!guest || m->vmx.fast_owner == m->cpu.vm_tag)
        return;
    fast_clear_row(m, 1, 0, 1);
    struct tlb *tlbs[2] = {&m->dtlb, &m->itlb};
    for (unsigned t = 0; t < 2; t++)
        for (uint32_t i = 0; i < tlbs[t]->entries; i++)
            if (tlbs[t]->e[i].tag >= GUEST_TAG_BASE)
                tlbs[t]->e[i].fast = 0;
    m->vmx.fast_owner = m->cpu.vm_tag;
}

/* Drop what the fast arrays of the CPLs in mask hold for page vpn. */
static void fast_forget_vpn(struct fast_set *row, uint64_t vpn, int data, unsigned mask)
{
    uint64_t page = vpn << PAGE_SHIFT;
    unsigned i = (unsigned)vpn & FAST_MASK;
    for (unsigned c = 0; c < 4; c++) {
        struct fast_set *s = &row[c];
        if (!(mask & (1u << c)))
            continue;
        if (!data && s->ex[i].tag == page)
            s->ex[i].tag = FAST_EMPTY;
        if (data && s->rd[i].tag == page)
            s->rd[i].tag = FAST_EMPTY;
        if (data && s->wr[i].tag == page)
            s->wr[i].tag = FAST_EMPTY;
        if (data && s->grd[i].tag == page)
            s->grd[i].tag = FAST_EMPTY;
        if (data && s->gwr[i].tag == page)
            s->gwr[i].tag = FAST_EMPTY;
    }
}

/* A decoded page is about to be reused: no exec entry may point to it. */
void fast_forget_dpage(struct p64_machine *m, const struct dinsn *dp)
{
    for (unsigned r = 0; r < 2; r++)
        for (unsigned c = 0; c < 4; c++)
            for (unsigned i = 0; i < FAST_N; i++) {
                struct exec_entry *x = &m->fast_sets[r][c].ex[i];
                if (x->dp == dp)
                    x->tag = FAST_EMPTY, x->dp = NULL;
            }
}

/* A physical page now holds decoded code: stores to it must take the slow path. */
void fast_forget_code_page(struct p64_machine *m, uint64_t ppn)
{
    uintptr_t host = (uintptr_t)(m->mem + (ppn << PAGE_SHIFT));
    for (unsigned r = 0; r < 2; r++)
        for (unsigned c = 0; c < 4; c++)
            for (unsigned i = 0; i < FAST_N; i++) {
                struct fast_entry *e = &m->fast_sets[r][c].wr[i], *g = &m->fast_sets[r][c].gwr[i];
                if (e->tag != FAST_EMPTY && e->addend + e->tag == host)
                    e->tag = FAST_EMPTY;
                if (g->tag != FAST_EMPTY && g->addend + g->tag == host)
                    g->tag = FAST_EMPTY;
            }
}

static void mark_dirty(struct p64_machine *m, unsigned cpl)
{
    m->fast_dirty |= 1u << (4u * (unsigned)(m->fast == m->fast_sets[1]) + cpl);
}

/* A data translation into the fast arrays of cpl: rd/wr for the accesses bounded by the segment
 * limit, grd/gwr for those through GS (gs). */
static void fast_install(struct p64_machine *m, uint64_t va, uint64_t pa, unsigned cpl, int writable, int gs)
{
    struct fast_set *s = &m->fast[cpl];
    struct fast_entry *rd = gs ? s->grd : s->rd, *wr = gs ? s->gwr : s->wr;
    if (gs)
        m->fast_dirty |= FAST_DIRTY_GS << (4u * (unsigned)(m->fast == m->fast_sets[1]) + cpl);
    else
        mark_dirty(m, cpl);
    unsigned i = (unsigned)(va >> PAGE_SHIFT) & FAST_MASK;
    uint64_t page = va & PAGE_MASK;
    uintptr_t addend = (uintptr_t)(m->mem + (pa & PAGE_MASK)) - (uintptr_t)page;
    rd[i].tag = page, rd[i].addend = addend;
    if (writable && !m->dpages[pa >> PAGE_SHIFT])
        wr[i].tag = page, wr[i].addend = addend;
}

/* ---- §8.2: the modeled TLB, set-associative with FIFO replacement ---- */

int tlb_init(struct tlb *t, uint32_t entries, uint32_t ways, int is_data)
{
    t->e = calloc(entries, sizeof *t->e);
    t->entries = entries, t->ways = ways, t->sets = entries / ways, t->large = 0, t->is_data = is_data;
    return t->e == NULL;
}

static struct tlb_entry *tlb_set(const struct tlb *t, uint64_t vpn)
{
    return &t->e[(vpn & (t->sets - 1)) * t->ways];
}

static struct tlb_entry *tlb_find(const struct tlb *t, uint64_t vpn, uint32_t tag)
{
    struct tlb_entry *s = tlb_set(t, vpn);
    for (uint32_t i = 0; i < t->ways; i++)
        if (s[i].valid && s[i].vpn == vpn && s[i].tag == tag)
            return &s[i];
    return NULL;
}

static void tlb_drop(struct p64_machine *m, struct tlb *t, struct tlb_entry *e)
{
    t->large -= e->level > 1;
    e->valid = 0;
    if (e->fast)
        fast_forget_vpn(row_of(m, e->tag), e->vpn, t->is_data, e->fast);
    e->fast = 0;
}

/* First in, first out: a free way, else the oldest fill of the set. */
static struct tlb_entry *tlb_victim(struct p64_machine *m, struct tlb *t, uint64_t vpn)
{
    struct tlb_entry *s = tlb_set(t, vpn), *oldest = s;
    for (uint32_t i = 0; i < t->ways; i++) {
        if (!s[i].valid)
            return &s[i];
        if (s[i].stamp < oldest->stamp)
            oldest = &s[i];
    }
    tlb_drop(m, t, oldest);
    return oldest;
}

static void tlb_fill(struct p64_machine *m, struct tlb *t, struct tlb_entry *e, uint64_t va,
                     const struct p64_walk *w, unsigned access)
{
    uint64_t leaf = w->levels ? w->entry[w->levels - 1] : PTE_D; /* guest paging off (vmx.md V.6) */
    e->vpn = va >> PAGE_SHIFT;
    e->pfn = w->physical >> PAGE_SHIFT;
    e->tag = m->cpu.vm_tag;
    e->level = (uint8_t)w->page_level;
    e->perm = (uint8_t)((w->writable ? PERM_W : 0) | (w->user ? PERM_U : 0) | (w->nx ? PERM_NX : 0));
    e->global = (leaf & PTE_G) && (m->cpu.cr4 & CR4_PGE);
    e->dirty = (leaf & PTE_D) || access == P64_ACCESS_WRITE;
    e->fast = 0;
    e->valid = 1;
    t->large += e->level > 1;
}

/* §5.3 steps 3 and 4 through the TLB: the entry to use, or NULL with the fault set.  A cached
 * entry that cannot serve the access (permissions, or a write through D = 0) is walked again,
 * counted as a miss, and refreshed in place; a failed walk drops it (x86: a #PF invalidates). */
static struct tlb_entry *translate(struct p64_machine *m, struct tlb *t, uint64_t va, unsigned access,
                                   unsigned cpl)
{
    const int paging = (m->cpu.cr0 & CR0_PG) != 0;
    if (paging && !canonical(va, levels_of(m))) {
        set_fault(m, V_GP, 1, 0, 0);
        return NULL;
    }
    uint64_t vpn = va >> PAGE_SHIFT;
    struct tlb_entry *e = tlb_find(t, vpn, m->cpu.vm_tag);
    if (e && permitted(m, e->perm, access, cpl) && (access != P64_ACCESS_WRITE || e->dirty)) {
        *(t->is_data ? &m->ctr.dtlb_hits : &m->ctr.itlb_hits) += 1;
        return e;
    }
    *(t->is_data ? &m->ctr.dtlb_misses : &m->ctr.itlb_misses) += 1;
    struct p64_walk w;
    unsigned f, nested_perm = 0;
    if (m->guest && m->vmx.ept)
        f = walk_2d(m, va, access, cpl, 1, &w, &nested_perm);
    else
        f = walk(m, va, access, cpl, 1, 1, &w);
    if (e)
        tlb_drop(m, t, e);
    if (f) {
        if (f != VEC_VMEXIT)
            set_fault(m, f, f == V_PF, w.error_code, f == V_PF ? va : 0);
        return NULL;
    }
    if (!e) {
        e = tlb_victim(m, t, vpn);
        e->stamp = ++m->tlb_stamp;
    } /* else: the same way, the same place in the FIFO */
    tlb_fill(m, t, e, va, &w, access);
    if (m->guest && m->vmx.ept) {
        e->perm |= (uint8_t)((nested_perm & EPT_W ? 0 : PERM_NO_NW) | (nested_perm & EPT_X ? 0 : PERM_NO_NX));
    }
    return e;
}

static void flush(struct p64_machine *m, struct tlb *t, int all)
{
    for (uint32_t i = 0; i < t->entries; i++) {
        struct tlb_entry *e = &t->e[i];
        if (e->valid && (all || (e->tag == m->cpu.vm_tag && !e->global)))
            tlb_drop(m, t, e);
    }
}

/* docs/vmx.md V.6: the page-walk cache of one dimension (0 guest, 1 nested); by_tag: only
 * the entries of that tag. */
void pwc_flush(struct p64_machine *m, int dim, int by_tag, uint64_t tag)
{
    for (unsigned i = 0; i < PWC_ENTRIES; i++) {
        struct pwc_entry *c = &m->nested.pwc[i];
        if (c->valid && c->dim == dim && (!by_tag || c->tag == tag))
            c->valid = 0;
    }
}

/* §2 CR3: every write drops the non-global entries of the current context (and its cached
 * guest paging entries, vmx.md V.6). */
void tlb_flush_nonglobal(struct p64_machine *m)
{
    flush(m, &m->dtlb, 0);
    flush(m, &m->itlb, 0);
    pwc_flush(m, 0, 1, m->cpu.vm_tag);
    m->ctr.tlb_flushes++;
}

/* Every entry of one tag, global ones included; all_guest: of every guest tag (vmx.md V.6,
 * V.7: INVEPT, INVVPID, guest CR0/CR4 paging changes). */
void tlb_flush_tag(struct p64_machine *m, uint32_t tag, int all_guest)
{
    struct tlb *tlbs[2] = {&m->dtlb, &m->itlb};
    for (unsigned t = 0; t < 2; t++)
        for (uint32_t i = 0; i < tlbs[t]->entries; i++) {
            struct tlb_entry *e = &tlbs[t]->e[i];
            if (e->valid && (all_guest ? e->tag >= GUEST_TAG_BASE : e->tag == tag))
                tlb_drop(m, tlbs[t], e);
        }
    if (all_guest)
        pwc_flush(m, 0, 0, 0);
    else
        pwc_flush(m, 0, 1, tag);
}

/* Everything, global entries and other contexts included (and every fast entry, since the
 * arrays may hold paging-off identity entries). */
void tlb_clear(struct p64_machine *m)
{
    for (uint32_t i = 0; i < m->dtlb.entries; i++)
        m->dtlb.e[i].valid = 0;
    for (uint32_t i = 0; i < m->itlb.entries; i++)
        m->itlb.e[i].valid = 0;
    m->dtlb.large = m->itlb.large = 0;
    pwc_flush(m, 0, 0, 0);
    fast_clear_all(m);
}

void tlb_flush_all(struct p64_machine *m)
{
    tlb_clear(m);
    m->ctr.tlb_full_flushes++;
}

int p64_tlb_flush(struct p64_machine *m)
{
    if (m->open)
        return refuse_open(m, "tlb_flush"); /* §10: an open run's TLB is the run's */
    tlb_flush_all(m);
    return P64_OK;
}

static int covers(const struct tlb_entry *e, uint64_t vpn)
{
    unsigned shift = INDEX_BITS * (e->level - 1u);
    return (e->vpn >> shift) == (vpn >> shift);
}

static void invlpg_in(struct p64_machine *m, struct tlb *t, uint64_t vpn)
{
    struct tlb_entry *s = t->large ? t->e : tlb_set(t, vpn);
    uint32_t n = t->large ? t->entries : t->ways;
    for (uint32_t i = 0; i < n; i++)
        if (s[i].valid && s[i].tag == m->cpu.vm_tag && covers(&s[i], vpn))
            tlb_drop(m, t, &s[i]);
}

/* §8.1: drop the translations of the page of va, all of a large page. */
void tlb_invlpg(struct p64_machine *m, uint64_t va)
{
    invlpg_in(m, &m->dtlb, va >> PAGE_SHIFT);
    invlpg_in(m, &m->itlb, va >> PAGE_SHIFT);
    pwc_flush(m, 0, 1, m->cpu.vm_tag); /* x86: invlpg drops the paging-structure caches */
    m->ctr.invlpgs++;
}

/* ---- §5.3: one data access (alignment, limit, canonical, translation, RAM) ---- */

/* gs: an access through the host segment, whose own limit the instruction checked: step 2 (the
 * segment limit) does not apply, and the translation goes to the GS fast arrays. */
static uint8_t *data_ptr(struct p64_machine *m, uint64_t va, unsigned size, unsigned access, unsigned cpl, int gs)
{
    if (va & (size - 1)) {
        set_fault(m, V_AC, 1, 0, 0);
        return NULL;
    }
    if (!gs && limited(m, cpl) && beyond_limit(m, va, size)) {
        set_fault(m, V_GP, 1, 0, 0);
        return NULL;
    }
    uint64_t pa = va;
    int writable = 1;
    if (m->translating) {
        struct tlb_entry *e = translate(m, &m->dtlb, va, access, cpl);
        if (!e)
            return NULL;
        pa = (e->pfn << PAGE_SHIFT) | (va & PAGE_OFFSET);
        writable = e->dirty && permitted(m, e->perm, P64_ACCESS_WRITE, cpl);
        e->fast |= (uint8_t)(1u << cpl);
    }
    if (pa >= m->mem_size) { /* aligned and in one page: in RAM iff its first byte is */
        set_fault(m, V_MC, 0, 0, 0);
        return NULL;
    }
    fast_install(m, va, pa, cpl, writable, gs);
    return m->mem + pa;
}

int load_slow(struct p64_machine *m, uint64_t va, unsigned size, unsigned cpl, uint64_t *out)
{
    const uint8_t *p = data_ptr(m, va, size, P64_ACCESS_READ, cpl, 0);
    if (!p)
        return 0;
    uint64_t v = 0;
    memcpy(&v, p, size);
    *out = v;
    return 1;
}

int store_slow(struct p64_machine *m, uint64_t va, unsigned size, unsigned cpl, uint64_t value)
{
    uint8_t *p = data_ptr(m, va, size, P64_ACCESS_WRITE, cpl, 0);
    if (!p)
        return 0;
    phys_write(m, (uint64_t)(p - m->mem), size, value);
    return 1;
}

/* ldgs/sdgs/jgs past the GS fast arrays: va = MSR_GSBASE + offset, its offset within MSR_GSLIMIT. */
int gs_load_slow(struct p64_machine *m, uint64_t va, unsigned cpl, uint64_t *out)
{
    const uint8_t *p = data_ptr(m, va, GS_SIZE, P64_ACCESS_READ, cpl, 1);
    if (!p)
        return 0;
    *out = rd64(p);
    return 1;
}

int gs_store_slow(struct p64_machine *m, uint64_t va, unsigned cpl, uint64_t value)
{
    uint8_t *p = data_ptr(m, va, GS_SIZE, P64_ACCESS_WRITE, cpl, 1);
    if (!p)
        return 0;
    phys_write(m, (uint64_t)(p - m->mem), GS_SIZE, value);
    return 1;
}

/* A store to physical memory that keeps decoded code coherent (§15). */
void phys_write(struct p64_machine *m, uint64_t pa, unsigned size, uint64_t value)
{
    memcpy(m->mem + pa, &value, size);
    if (UNLIKELY(m->dpages[pa >> PAGE_SHIFT] != NULL))
        dcache_store(m, pa, size);
}

/* §8.2: fetch enters the page of va: the checks of §5.3 for a 4-byte fetch, the ITLB, then
 * the page's decoded code, remembered in the exec fast array.  NULL with the fault set. */
struct dinsn *fetch_page(struct p64_machine *m, uint64_t va, unsigned cpl)
{
    if (va & 3) {
        set_fault(m, V_AC, 1, 0, 0);
        return NULL;
    }
    if (limited(m, cpl) && fetch_beyond_limit(m, va)) {
        set_fault(m, V_GP, 1, 0, 0);
        return NULL;
    }
    uint64_t pa = va;
    if (m->translating) {
        struct tlb_entry *e = translate(m, &m->itlb, va, P64_ACCESS_FETCH, cpl);
        if (!e)
            return NULL;
        pa = (e->pfn << PAGE_SHIFT) | (va & PAGE_OFFSET);
        e->fast |= (uint8_t)(1u << cpl);
    }
    if (pa >= m->mem_size) {
        set_fault(m, V_MC, 0, 0, 0);
        return NULL;
    }
    struct dinsn *dp = dcache_page(m, pa >> PAGE_SHIFT);
    struct exec_entry *x = &m->fast[cpl].ex[(va >> PAGE_SHIFT) & FAST_MASK];
    x->tag = va & PAGE_MASK, x->dp = dp;
    mark_dirty(m, cpl);
    return dp;
}
