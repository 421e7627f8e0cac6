/* The machine object: create/destroy, config and CPU-state validation, physical memory access,
 * reset and snapshots (docs/architecture.md §2, §10, §12). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core.h"

#define MEM_MIN (64ull << 10)
#define MEM_MAX (4ull << 30)
#define TLB_MIN 4u
#define TLB_MAX 4096u
#define KNOWN_FEATURES (P64_F_CLASSIC | P64_F_SEGLIMIT | P64_F_VMX | P64_F_EPT | P64_F_VPID | P64_F_TPR_SHADOW | P64_F_IOMMU | P64_F_PWC)
#define VMX_FEATURES (P64_F_EPT | P64_F_VPID | P64_F_TPR_SHADOW | P64_F_PWC)

/* The error of a p64_create that returned no machine (read with p64_last_error(NULL)). */
static _Thread_local char create_error[256];

int p64_error(struct p64_machine *m, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m ? m->error : create_error, sizeof create_error, fmt, ap);
    va_end(ap);
    return rc;
}

/* §10: while a run is open (paused between two slices) the host's calls wait for its end. */
int refuse_open(struct p64_machine *m, const char *what)
{
    return p64_error(m, P64_ERR_STATE,
                     "%s%sa run is open (paused, %llu ticks of its budget left): resume it (p64_resume) or close it "
                     "(p64_close) first",
                     what ? what : "", what ? ": " : "", (unsigned long long)m->open_left);
}

const char *p64_last_error(struct p64_machine *m)
{
    return m ? m->error : create_error;
}

const char *p64_isa_hash(void)
{
    return P64_ISA_HASH;
}

uint32_t p64_abi_version(void)
{
    return P64_ABI_VERSION;
}

/* ---- configuration (§8.2, §12) ---- */

static int is_pow2(uint32_t x)
{
    return x && !(x & (x - 1));
}

static int check_tlb(const char *name, uint32_t entries, uint32_t ways)
{
    if (!is_pow2(entries) || entries < TLB_MIN || entries > TLB_MAX)
        return p64_error(NULL, P64_ERR_CONFIG, "config.%s_entries = %u: must be a power of two, %u..%u",
                         name, entries, TLB_MIN, TLB_MAX);
    if (!is_pow2(ways) || ways > entries)
        return p64_error(NULL, P64_ERR_CONFIG,
                         "config.%s_ways = %u: must be a power of two dividing %s_entries = %u",
                         name, ways, name, entries);
    return P64_OK;
}

static int check_config(const struct p64_config *c)
{
    if (!c)
        return p64_error(NULL, P64_ERR_CONFIG, "config is NULL");
    if (c->mem_size % PAGE_SIZE || c->mem_size < MEM_MIN || c->mem_size > MEM_MAX)
        return p64_error(NULL, P64_ERR_CONFIG,
                         "config.mem_size = %llu: must be a multiple of 4096 from 64 KiB to 4 GiB",
                         (unsigned long long)c->mem_size);
    if (c->features & ~(uint32_t)KNOWN_FEATURES)
        return p64_error(NULL, P64_ERR_CONFIG, "config.features = %#x: unknown feature bits %#x", c->features,
                         c->features & ~(uint32_t)KNOWN_FEATURES);
    if ((c->features & VMX_FEATURES) && !(c->features & P64_F_VMX))
        return p64_error(NULL, P64_ERR_CONFIG,
                         "config.features = %#x: ept, vpid, tpr_shadow and pwc extend vmx (4), which is missing",
                         c->features);
    if ((c->features & P64_F_PWC) && !(c->features & P64_F_EPT))
        return p64_error(NULL, P64_ERR_CONFIG, "config.features = %#x: pwc caches ept walks: it needs ept (8)",
                         c->features);
    if (c->mem_shared > 1)
        return p64_error(NULL, P64_ERR_CONFIG, "config.mem_shared = %u: must be 0 or 1", c->mem_shared);
    int rc = check_tlb("dtlb", c->dtlb_entries, c->dtlb_ways);
    return rc ? rc : check_tlb("itlb", c->itlb_entries, c->itlb_ways);
}

/* RAM: private zeroed memory, or a shared anonymous mapping (zeroed too) that a forked
 * process writes and its parent reads: the grader judges host RAM from outside the process
 * that runs the VMM under test. */
static uint8_t *alloc_ram(uint64_t size, uint32_t shared)
{
    if (!shared)
        return calloc(1, (size_t)size);
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void free_ram(uint8_t *mem, uint64_t size, uint32_t shared)
{
    if (!mem)
        return;
    if (shared)
        munmap(mem, (size_t)size);
    else
        free(mem);
}

int p64_create(const struct p64_config *config, struct p64_machine **out)
{
    if (!out)
        return p64_error(NULL, P64_ERR_CONFIG, "out is NULL");
    *out = NULL;
    int rc = check_config(config);
    if (rc)
        return rc;
    struct p64_machine *m = calloc(1, sizeof *m);
    if (!m)
        return p64_error(NULL, P64_ERR_NOMEM, "out of memory for the machine");
    m->config = *config;
    m->fast = m->fast_sets[0];
    m->fast_dirty = 0xffff; /* calloc'ed tags are 0, not FAST_EMPTY: the first clear empties all */
    m->mem_size = config->mem_size;
    m->mem_pages = config->mem_size >> PAGE_SHIFT;
    m->mem = alloc_ram(m->mem_size, config->mem_shared);
    m->dpages = calloc((size_t)m->mem_pages, sizeof *m->dpages);
    m->dlist = calloc(DPAGE_MAX, sizeof *m->dlist);
    m->free_pages = malloc(sizeof(struct dpage)); /* the spare: decoding never lacks a page */
    if (m->free_pages)
        m->free_pages->next = NULL;
    m->scratch = calloc(DPAGE_WORDS + 1, sizeof *m->scratch); /* run.c short_run */
    m->jit = jit_create(); /* NULL: off, or no room for code; the interpreter runs alone (§15) */
    if (!m->mem || !m->dpages || !m->dlist || !m->free_pages || !m->scratch ||
        tlb_init(&m->dtlb, config->dtlb_entries, config->dtlb_ways, 1) ||
        tlb_init(&m->itlb, config->itlb_entries, config->itlb_ways, 0)) {
        p64_destroy(m);
        return p64_error(NULL, P64_ERR_NOMEM, "out of memory for %llu bytes of RAM",
                         (unsigned long long)config->mem_size);
    }
    p64_reset(m);
    *out = m;
    return P64_OK;
}

void p64_destroy(struct p64_machine *m)
{
    if (!m)
        return;
    dcache_free(m);
    jit_destroy(m->jit);
    free(m->dtlb.e);
    free(m->itlb.e);
    free(m->dlist);
    free(m->dpages);
    free(m->scratch);
    free_ram(m->mem, m->mem_size, m->config.mem_shared);
    free(m);
}

/* ---- accessors ---- */

struct p64_cpu *p64_cpu(struct p64_machine *m) { return &m->cpu; }
struct p64_exit *p64_exit_info(struct p64_machine *m) { return &m->exit; }
struct p64_counters *p64_counters(struct p64_machine *m) { return &m->ctr; }
uint8_t *p64_memory(struct p64_machine *m) { return m->mem; }
uint64_t p64_memory_size(struct p64_machine *m) { return m->mem_size; }
uint64_t p64_clock(struct p64_machine *m) { return m->clock; }

/* §9: the clock never passes 2^64 - 1 (runs stop there, run_budget), nor wraps to 0. */
int p64_advance_clock(struct p64_machine *m, uint64_t ticks)
{
    if (m->open)
        return refuse_open(m, "advance_clock");
    if (ticks > UINT64_MAX - m->clock)
        return p64_error(m, P64_ERR_RANGE,
                         "advance_clock: ticks = %llu: the clock (%llu) would pass 2^64 - 1 (%llu ticks left)",
                         (unsigned long long)ticks, (unsigned long long)m->clock,
                         (unsigned long long)(UINT64_MAX - m->clock));
    m->clock += ticks;
    m->ctr.halted_ticks += ticks;
    return P64_OK;
}

/* ---- physical memory (§5.1, §15) ---- */

static int check_range(struct p64_machine *m, uint64_t addr, uint64_t len)
{
    if (addr > m->mem_size || len > m->mem_size - addr)
        return p64_error(m, P64_ERR_RANGE, "physical range [%#llx, +%#llx) is outside RAM [0, %#llx)",
                         (unsigned long long)addr, (unsigned long long)len,
                         (unsigned long long)m->mem_size);
    return P64_OK;
}

int p64_write_phys(struct p64_machine *m, uint64_t addr, const uint8_t *data, uint64_t len)
{
    if (m->open)
        return refuse_open(m, "write");
    int rc = check_range(m, addr, len);
    if (rc || !len)
        return rc;
    memcpy(m->mem + addr, data, (size_t)len);
    dcache_drop_range(m, addr, len);
    return P64_OK;
}

int p64_read_phys(struct p64_machine *m, uint64_t addr, uint8_t *out, uint64_t len)
{
    int rc = check_range(m, addr, len);
    if (!rc && len)
        memcpy(out, m->mem + addr, (size_t)len);
    return rc;
}

int p64_code_written(struct p64_machine *m, uint64_t addr, uint64_t len)
{
    if (m->open)
        return refuse_open(m, "code_written");
    int rc = check_range(m, addr, len);
    if (!rc && len)
        dcache_drop_range(m, addr, len);
    return rc;
}

/* ---- §2 reset values; §10 host-written state ---- */

void cpu_reset(struct p64_machine *m)
{
    memset(&m->cpu, 0, sizeof m->cpu);
    m->cpu.cr0 = CR0_PE;
    m->cpu.cr4 = 2;
    m->cpu.seglimit = ~0ull;
    m->cpu.cslimit = ~0ull;
    /* gsbase and gslimit reset to 0: a GS of one byte at 0, which no 8-byte access fits (§5.4) */
    m->cpu.intr_vector = -1;
    m->cpu.intr_acked = -1;
}

int p64_reset(struct p64_machine *m)
{
    if (m->open)
        return refuse_open(m, "reset");
    cpu_reset(m);
    memset(&m->exit, 0, sizeof m->exit);
    memset(&m->ctr, 0, sizeof m->ctr);
    memset(&m->nested, 0, sizeof m->nested);
    m->clock = 0;
    m->guest = 0;
    m->fast = m->fast_sets[0];
    tlb_clear(m);
    fast_clear_all(m);
    dcache_clear(m);
    m->fetch_valid = 0;
    m->seen_cr0 = m->cpu.cr0;
    m->seen_cr3 = m->cpu.cr3;
    m->seen_cr4 = m->cpu.cr4;
    m->seen_vm_tag = m->cpu.vm_tag;
    return P64_OK;
}

static int bad(struct p64_machine *m, const char *field, long long value, const char *why)
{
    return p64_error(m, 0, "cpu.%s = %lld: %s", field, value, why), 0;
}

static int bad_hex(struct p64_machine *m, const char *field, uint64_t value, const char *why)
{
    return p64_error(m, 0, "cpu.%s = %#llx: %s", field, (unsigned long long)value, why), 0;
}

/* The common case of check_state in one expression: every field possible. */
static int state_plausible(const struct p64_cpu *c)
{
    return c->cpl <= 3 && c->vm_tag < GUEST_TAG_BASE && !(c->flags & ~FLAGS_MASK) && (c->cr0 & CR0_PE) && !(c->cr0 & ~CR0_MASK) &&
           !(c->cr3 & ~CR3_FRAME) && !(c->cr4 & ~CR4_MASK) && (c->cr4 & CR4_PL) != CR4_PL &&
           c->cr8 <= CR8_MAX && (uint32_t)(c->intr_vector + 1) <= 256 && (uint32_t)(c->intr_acked + 1) <= 256 &&
           (c->halted | c->int_shadow | c->shutdown | c->pending_db) <= 1;
}

/* §10: refuse state no program could produce; 1 if the state is possible. */
int check_state(struct p64_machine *m)
{
    const struct p64_cpu *c = &m->cpu;
    if (LIKELY(state_plausible(c) && !m->open))
        return 1;
    if (m->open)
        return refuse_open(m, NULL), 0;
    static const unsigned crs[] = {0, 3, 4, 8};
    static const char *const cr_names[] = {"cr0", "cr3", "cr4", "cr8"};
    const uint64_t cr_values[] = {c->cr0, c->cr3, c->cr4, c->cr8};
    if (c->cpl > 3)
        return bad(m, "cpl", (long long)c->cpl, "must be 0..3");
    if (c->vm_tag >= GUEST_TAG_BASE)
        return bad_hex(m, "vm_tag", c->vm_tag, "host tags are 0..0xffff (larger ones are guest mode's, vmx.md V.7)");
    if (c->flags & ~FLAGS_MASK)
        return bad_hex(m, "flags", c->flags, "reserved bits set (only TF, IF and IOPL exist)");
    for (unsigned i = 0; i < 4; i++) {
        const char *why = cr_write_error(crs[i], cr_values[i]);
        if (why)
            return bad_hex(m, cr_names[i], cr_values[i], why);
    }
    if (c->intr_vector < -1 || c->intr_vector > 255)
        return bad(m, "intr_vector", c->intr_vector, "must be -1..255");
    if (c->intr_acked < -1 || c->intr_acked > 255)
        return bad(m, "intr_acked", c->intr_acked, "must be -1..255");
    if (c->halted > 1)
        return bad(m, "halted", c->halted, "must be 0 or 1");
    if (c->int_shadow > 1)
        return bad(m, "int_shadow", c->int_shadow, "must be 0 or 1");
    if (c->shutdown > 1)
        return bad(m, "shutdown", c->shutdown, "must be 0 or 1");
    if (c->pending_db > 1)
        return bad(m, "pending_db", c->pending_db, "must be 0 or 1");
    return 1;
}

/* ---- snapshots ---- */

#define SNAP_MAGIC 0x50414e5334365050ull /* "PP64SNAP" */
#define SNAP_VERSION 3u

struct snap_header {
    uint64_t magic;
    uint32_t version, abi, features, dtlb_entries, dtlb_ways, itlb_entries, itlb_ways, pad;
    uint64_t mem_size;
};

struct snap_state {
    struct p64_cpu cpu;
    struct p64_exit exit;
    struct p64_counters ctr;
    uint64_t clock, tlb_stamp;
    uint64_t seen_cr0, seen_cr3, seen_cr4;
    uint32_t seen_vm_tag, pad;
    struct vmx_persist nested;
};

static uint64_t tlb_bytes(const struct tlb *t)
{
    return (uint64_t)t->entries * sizeof(struct tlb_entry);
}

uint64_t p64_snapshot_size(struct p64_machine *m)
{
    return sizeof(struct snap_header) + sizeof(struct snap_state) + tlb_bytes(&m->dtlb) +
           tlb_bytes(&m->itlb) + m->mem_size;
}

static void snap_header(const struct p64_machine *m, struct snap_header *h)
{
    memset(h, 0, sizeof *h);
    h->magic = SNAP_MAGIC;
    h->version = SNAP_VERSION;
    h->abi = P64_ABI_VERSION;
    h->features = m->config.features;
    h->dtlb_entries = m->config.dtlb_entries;
    h->dtlb_ways = m->config.dtlb_ways;
    h->itlb_entries = m->config.itlb_entries;
    h->itlb_ways = m->config.itlb_ways;
    h->mem_size = m->mem_size;
}

/* The decoded cache is dropped at snapshot and restore alike, so the runs after either
 * start from the same cache and count the same pages_decoded. */
int p64_snapshot(struct p64_machine *m, uint8_t *buf, uint64_t len)
{
    if (m->open)
        return refuse_open(m, "snapshot");
    if (len != p64_snapshot_size(m))
        return p64_error(m, P64_ERR_SNAPSHOT, "snapshot buffer of %llu bytes: this machine needs %llu",
                         (unsigned long long)len, (unsigned long long)p64_snapshot_size(m));
    struct snap_header h;
    struct snap_state s;
    memset(&s, 0, sizeof s);
    s.cpu = m->cpu, s.exit = m->exit, s.ctr = m->ctr, s.clock = m->clock, s.tlb_stamp = m->tlb_stamp;
    s.seen_cr0 = m->seen_cr0, s.seen_cr3 = m->seen_cr3, s.seen_cr4 = m->seen_cr4;
    s.seen_vm_tag = m->seen_vm_tag;
    s.nested = m->nested;
    snap_header(m, &h);
    dcache_clear(m);
    uint8_t *p = buf;
    memcpy(p, &h, sizeof h), p += sizeof h;
    memcpy(p, &s, sizeof s), p += sizeof s;
    memcpy(p, m->dtlb.e, (size_t)tlb_bytes(&m->dtlb)), p += tlb_bytes(&m->dtlb);
    memcpy(p, m->itlb.e, (size_t)tlb_bytes(&m->itlb)), p += tlb_bytes(&m->itlb);
    memcpy(p, m->mem, (size_t)m->mem_size);
    return P64_OK;
}

static uint32_t count_large(const struct tlb *t)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->entries; i++)
        n += t->e[i].valid && t->e[i].level > 1;
    return n;
}

/* A restored TLB entry must look like one the core made (level 1..3, flags 0/1, a host or a
 * guest tag, in the set of its page).  Its frame is not bounded: a walk may cache a frame
 * beyond RAM, which the access then finds (#MC, §5.3). */
static const char *tlb_error(const struct tlb *t, const uint8_t *entries)
{
    for (uint32_t i = 0; i < t->entries; i++) {
        struct tlb_entry e;
        memcpy(&e, entries + (uint64_t)i * sizeof e, sizeof e);
        if (e.valid > 1)
            return "a TLB entry neither valid nor invalid";
        if (e.valid && (e.level < 1 || e.level > 3 || e.global > 1 || e.dirty > 1 || e.perm > PERM_ALL || e.fast > 15 ||
                        e.tag > (GUEST_TAG_BASE | 0xffffu) || (e.vpn & (t->sets - 1)) != i / t->ways))
            return "a malformed TLB entry";
    }
    return NULL;
}

/* The nested caches and the IOMMU a snapshot carries (docs/vmx.md V.6, V.10): every one is
 * used later without a bound check of its own.  A nested TLB entry's frame is one a nested
 * walk found in RAM (walk_2d reads guest paging entries through it); a page-walk cache entry
 * is of a dimension (0 guest, 1 nested) and an upper level (2..4); the FIFO indices are below
 * their cache's size; an IOMMU root passed iommu_attach's checks; the attached set names
 * devices 0..15 and the fault log holds at most its 64 faults. */
static const char *nested_error(const struct p64_machine *m, const struct vmx_persist *n, char *why, size_t size)
{
    for (unsigned i = 0; i < NTLB_ENTRIES; i++) {
        const struct ntlb_entry *e = &n->ntlb[i];
        if (e->valid > 1 || (e->valid && (e->hpn >= m->mem_pages || e->perm > (EPT_R | EPT_W | EPT_X))))
            return snprintf(why, size, "nested TLB entry %u: frame %#llx beyond RAM or malformed", i,
                            (unsigned long long)e->hpn), why;
    }
    for (unsigned i = 0; i < PWC_ENTRIES; i++) {
        const struct pwc_entry *c = &n->pwc[i];
        if (c->valid > 1 || (c->valid && (c->dim > 1 || c->level < 2 || c->level > 4 || c->perm > 7)))
            return snprintf(why, size, "page-walk cache entry %u: malformed", i), why;
    }
    if (n->pwc_next >= PWC_ENTRIES || n->ntlb_next >= NTLB_ENTRIES)
        return snprintf(why, size, "page-walk cache or nested TLB index out of range"), why;
    for (unsigned d = 0; d < P64_IOMMU_DEVICES; d++) {
        const char *e = ept_root_error(m, n->iommu_root[d]);
        if (e)
            return snprintf(why, size, "IOMMU root of device %u = %#llx: %s", d,
                            (unsigned long long)n->iommu_root[d], e), why;
    }
    if (n->iommu_attached >> P64_IOMMU_DEVICES)
        return snprintf(why, size, "IOMMU attached set %#x names devices beyond 15", n->iommu_attached), why;
    if (n->nfaults > P64_IOMMU_FAULT_LOG)
        return snprintf(why, size, "IOMMU fault log of %u faults (it holds %u)", n->nfaults, P64_IOMMU_FAULT_LOG), why;
    return NULL;
}

/* Everything is checked before anything is written: a refused snapshot leaves the machine as
 * it was (§10). */
int p64_restore(struct p64_machine *m, const uint8_t *buf, uint64_t len)
{
    if (m->open)
        return refuse_open(m, "restore");
    struct snap_header h, want;
    snap_header(m, &want);
    if (len != p64_snapshot_size(m))
        return p64_error(m, P64_ERR_SNAPSHOT, "snapshot of %llu bytes: this machine takes %llu",
                         (unsigned long long)len, (unsigned long long)p64_snapshot_size(m));
    memcpy(&h, buf, sizeof h);
    if (memcmp(&h, &want, sizeof h))
        return p64_error(m, P64_ERR_SNAPSHOT,
                         "snapshot of another machine shape (memory, features, TLB geometry or version)");
    struct snap_state s;
    const uint8_t *p = buf + sizeof h;
    memcpy(&s, p, sizeof s), p += sizeof s;
    const uint8_t *dtlb = p, *itlb = dtlb + tlb_bytes(&m->dtlb), *mem = itlb + tlb_bytes(&m->itlb);
    char why[160];
    const char *corrupt = tlb_error(&m->dtlb, dtlb);
    if (!corrupt)
        corrupt = tlb_error(&m->itlb, itlb);
    if (!corrupt)
        corrupt = nested_error(m, &s.nested, why, sizeof why);
    if (corrupt)
        return p64_error(m, P64_ERR_SNAPSHOT, "corrupt snapshot: %s", corrupt);
    memcpy(m->dtlb.e, dtlb, (size_t)tlb_bytes(&m->dtlb));
    memcpy(m->itlb.e, itlb, (size_t)tlb_bytes(&m->itlb));
    memcpy(m->mem, mem, (size_t)m->mem_size);
    m->cpu = s.cpu, m->exit = s.exit, m->ctr = s.ctr, m->clock = s.clock, m->tlb_stamp = s.tlb_stamp;
    m->seen_cr0 = s.seen_cr0, m->seen_cr3 = s.seen_cr3, m->seen_cr4 = s.seen_cr4;
    m->seen_vm_tag = s.seen_vm_tag;
    m->nested = s.nested;
    m->dtlb.large = count_large(&m->dtlb);
    m->itlb.large = count_large(&m->itlb);
    fast_clear_all(m);
    dcache_clear(m);
    m->fetch_valid = 0;
    return P64_OK;
}
