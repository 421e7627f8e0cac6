/* Guest mode (docs/vmx.md): the VMCS and its counted accesses, the entry checks, p64_vmrun
 * with entry, event injection and exit, the exit conditions the interpreter asks about, the
 * page-walk caches, INVEPT/INVVPID and DMA remapping through the IOMMU. */
#include <stddef.h>
#include <stdlib.h>

#include "core.h"

#define ERROR_CODE_VECTORS ((1u << V_DF) | (1u << V_GP) | (1u << V_PF) | (1u << V_AC)) /* §6.1 */
#define INTR_VALID (1ull << P64_INTR_VALID_BIT)
#define INTR_HAS_ERROR (1ull << P64_INTR_ERROR_CODE_BIT)
#define INTR_TYPE_EXTERNAL ((unsigned)P64_INTR_TYPE_EXTERNAL)
#define INTR_TYPE_HARDWARE ((unsigned)P64_INTR_TYPE_HARDWARE_EXCEPTION)
#define INTR_TYPE_SOFTWARE ((unsigned)P64_INTR_TYPE_SOFTWARE_INTERRUPT)
#define ACTIVITY_HLT 1u
#define ACTIVITY_SHUTDOWN 2u
#define IO_BITMAP_SIZE 8192ull
#define MSR_BITMAP_SIZE 4096ull
#define MSR_BITMAP_LIMIT 16383u
#define EPTP_RESERVED (0xfff0000000000ffcull) /* bits 63:52 and 11:2 */

static const char *const field_names[P64_VMCS_FIELDS] = {
    [P64_VMCS_GUEST_PC] = "GUEST_PC",
    [P64_VMCS_GUEST_FLAGS] = "GUEST_FLAGS",
    [P64_VMCS_GUEST_CPL] = "GUEST_CPL",
    [P64_VMCS_GUEST_CR0] = "GUEST_CR0",
    [P64_VMCS_GUEST_CR2] = "GUEST_CR2",
    [P64_VMCS_GUEST_CR3] = "GUEST_CR3",
    [P64_VMCS_GUEST_CR4] = "GUEST_CR4",
    [P64_VMCS_GUEST_CR8] = "GUEST_CR8",
    [P64_VMCS_GUEST_IDTR] = "GUEST_IDTR",
    [P64_VMCS_GUEST_RSP0] = "GUEST_RSP0",
    [P64_VMCS_GUEST_RSP1] = "GUEST_RSP1",
    [P64_VMCS_GUEST_RSP2] = "GUEST_RSP2",
    [P64_VMCS_GUEST_SEGLIMIT] = "GUEST_SEGLIMIT",
    [P64_VMCS_GUEST_INTERRUPTIBILITY] = "GUEST_INTERRUPTIBILITY",
    [P64_VMCS_GUEST_ACTIVITY] = "GUEST_ACTIVITY",
    [P64_VMCS_GUEST_PENDING_DB] = "GUEST_PENDING_DB",
    [P64_VMCS_PIN_CONTROLS] = "PIN_CONTROLS",
    [P64_VMCS_PROC_CONTROLS] = "PROC_CONTROLS",
    [P64_VMCS_EXCEPTION_BITMAP] = "EXCEPTION_BITMAP",
    [P64_VMCS_PF_ERROR_CODE_MASK] = "PF_ERROR_CODE_MASK",
    [P64_VMCS_PF_ERROR_CODE_MATCH] = "PF_ERROR_CODE_MATCH",
    [P64_VMCS_CR0_GUEST_HOST_MASK] = "CR0_GUEST_HOST_MASK",
    [P64_VMCS_CR0_READ_SHADOW] = "CR0_READ_SHADOW",
    [P64_VMCS_CR4_GUEST_HOST_MASK] = "CR4_GUEST_HOST_MASK",
    [P64_VMCS_CR4_READ_SHADOW] = "CR4_READ_SHADOW",
    [P64_VMCS_IO_BITMAP] = "IO_BITMAP",
    [P64_VMCS_MSR_BITMAP] = "MSR_BITMAP",
    [P64_VMCS_TSC_OFFSET] = "TSC_OFFSET",
    [P64_VMCS_VIRTUAL_TPR] = "VIRTUAL_TPR",
    [P64_VMCS_TPR_THRESHOLD] = "TPR_THRESHOLD",
    [P64_VMCS_EPT_POINTER] = "EPT_POINTER",
    [P64_VMCS_VPID] = "VPID",
    [P64_VMCS_ENTRY_INTR_INFO] = "ENTRY_INTR_INFO",
    [P64_VMCS_ENTRY_ERROR_CODE] = "ENTRY_ERROR_CODE",
    [P64_VMCS_EXIT_REASON] = "EXIT_REASON",
    [P64_VMCS_EXIT_QUALIFICATION] = "EXIT_QUALIFICATION",
    [P64_VMCS_GUEST_LINEAR_ADDRESS] = "GUEST_LINEAR_ADDRESS",
    [P64_VMCS_GUEST_PHYSICAL_ADDRESS] = "GUEST_PHYSICAL_ADDRESS",
    [P64_VMCS_EXIT_INTR_INFO] = "EXIT_INTR_INFO",
    [P64_VMCS_EXIT_INTR_ERROR_CODE] = "EXIT_INTR_ERROR_CODE",
    [P64_VMCS_IDT_VECTORING_INFO] = "IDT_VECTORING_INFO",
    [P64_VMCS_IDT_VECTORING_ERROR_CODE] = "IDT_VECTORING_ERROR_CODE",
    [P64_VMCS_EXIT_INSTRUCTION_LENGTH] = "EXIT_INSTRUCTION_LENGTH",
    [P64_VMCS_EXIT_INSTRUCTION_WORD] = "EXIT_INSTRUCTION_WORD",
};

/* V.2: the controls that exist; every other bit is reserved. */
#define PIN_DEFINED (1ull << P64_PIN_EXTERNAL_INTERRUPT_EXITING)
#define PROC_DEFINED                                                                               \
    (bit(P64_PROC_INTERRUPT_WINDOW_EXITING) | bit(P64_PROC_USE_TSC_OFFSET) | bit(P64_PROC_HLT_EXITING) |  \
     bit(P64_PROC_INVLPG_EXITING) | bit(P64_PROC_RDTSC_EXITING) | bit(P64_PROC_CR3_LOAD_EXITING) |       \
     bit(P64_PROC_CR3_STORE_EXITING) | bit(P64_PROC_CR8_LOAD_EXITING) | bit(P64_PROC_CR8_STORE_EXITING) | \
     bit(P64_PROC_USE_TPR_SHADOW) | bit(P64_PROC_UNCONDITIONAL_IO_EXITING) | bit(P64_PROC_USE_IO_BITMAPS) | \
     bit(P64_PROC_DESCRIPTOR_TABLE_EXITING) | bit(P64_PROC_USE_MSR_BITMAPS) | bit(P64_PROC_ENABLE_EPT) |   \
     bit(P64_PROC_ENABLE_VPID))

/* ---- V.2: the VMCS ---- */

int p64_vmcs_create(struct p64_machine *m, struct p64_vmcs **out)
{
    if (!out)
        return p64_error(m, P64_ERR_VMX, "vmcs: out is NULL");
    *out = NULL;
    if (!has_feature(m, P64_F_VMX))
        return p64_error(m, P64_ERR_VMX, "vmcs: this machine's profile has no vmx feature");
    struct p64_vmcs *v = calloc(1, sizeof *v);
    if (!v)
        return p64_error(m, P64_ERR_NOMEM, "out of memory for a VMCS");
    v->owner = m;
    /* the guest's reset state (§2), as a VMM would start a VM */
    v->f[P64_VMCS_GUEST_CR0] = CR0_PE;
    v->f[P64_VMCS_GUEST_CR4] = 2;
    v->f[P64_VMCS_GUEST_SEGLIMIT] = ~0ull;
    *out = v;
    return P64_OK;
}

void p64_vmcs_destroy(struct p64_vmcs *v)
{
    free(v);
}

uint64_t *p64_vmcs_regs(struct p64_vmcs *v)
{
    return v->regs;
}

static int check_vmcs(struct p64_machine *m, const struct p64_vmcs *v, uint32_t field, const char *what)
{
    if (m->open)
        return refuse_open(m, what);
    if (!v || v->owner != m)
        return p64_error(m, P64_ERR_VMX, "%s: the VMCS belongs to another machine", what);
    if (field >= P64_VMCS_FIELDS)
        return p64_error(m, P64_ERR_VMX, "%s: no VMCS field %u (fields are 0..%u)", what, field, P64_VMCS_FIELDS - 1);
    return P64_OK;
}

/* Adams & Agesen (2006) price each VMREAD and VMWRITE: every access is counted. */
int p64_vmcs_read(struct p64_machine *m, struct p64_vmcs *v, uint32_t field, uint64_t *out)
{
    int rc = check_vmcs(m, v, field, "vmcs read");
    if (rc)
        return rc;
    m->ctr.vmcs_reads++;
    *out = v->f[field];
    return P64_OK;
}

int p64_vmcs_write(struct p64_machine *m, struct p64_vmcs *v, uint32_t field, uint64_t value)
{
    int rc = check_vmcs(m, v, field, "vmcs write");
    if (rc)
        return rc;
    if (field >= P64_VMCS_EXIT_REASON)
        return p64_error(m, P64_ERR_VMX, "vmcs write: %s is exit information, read-only", field_names[field]);
    m->ctr.vmcs_writes++;
    v->f[field] = value;
    return P64_OK;
}

/* Batches (a VMM loads and stores a whole vcpu at each exit): each field exactly as one
   p64_vmcs_read/p64_vmcs_write, checked and counted; the first refused field stops the batch
   with its error, the ones before it done. */
int p64_vmcs_read_many(struct p64_machine *m, struct p64_vmcs *v, const uint32_t *fields, uint64_t *out, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = p64_vmcs_read(m, v, fields[i], &out[i]);
        if (rc)
            return rc;
    }
    return P64_OK;
}

int p64_vmcs_write_many(struct p64_machine *m, struct p64_vmcs *v, const uint32_t *fields, const uint64_t *values,
                        uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = p64_vmcs_write(m, v, fields[i], values[i]);
        if (rc)
            return rc;
    }
    return P64_OK;
}

/* A whole VMCS (a VMM's snapshot of a VM): not counted, as it is not a guest-visible cost. */
int p64_vmcs_copy(struct p64_machine *m, struct p64_vmcs *dst, const struct p64_vmcs *src)
{
    int rc = check_vmcs(m, dst, 0, "vmcs copy");
    if (!rc)
        rc = check_vmcs(m, src, 0, "vmcs copy");
    if (!rc)
        *dst = *src;
    return rc;
}

/* ---- V.8: entry checks ---- */

static int refuse(struct p64_machine *m, uint32_t field, uint64_t value, const char *why)
{
    return p64_error(m, P64_ERR_VMX, "vmrun: VMCS %s = %#llx: %s", field_names[field], (unsigned long long)value, why);
}

static int first_bit(uint64_t x)
{
    return __builtin_ctzll(x);
}

static int reserved(struct p64_machine *m, uint32_t field, uint64_t value, uint64_t defined)
{
    if (!(value & ~defined))
        return P64_OK;
    return p64_error(m, P64_ERR_VMX, "vmrun: VMCS %s = %#llx: reserved bit %d set", field_names[field],
                     (unsigned long long)value, first_bit(value & ~defined));
}

static int needs_feature(struct p64_machine *m, uint64_t proc_controls, unsigned b, uint32_t feature,
                         const char *control, const char *name)
{
    if ((proc_controls >> b & 1) && !has_feature(m, feature)) {
        p64_error(m, P64_ERR_VMX, "vmrun: VMCS PROC_CONTROLS = %#llx: %s needs the %s feature, which this profile lacks",
                  (unsigned long long)proc_controls, control, name);
        return P64_ERR_VMX;
    }
    return P64_OK;
}

static int in_ram(const struct p64_machine *m, uint64_t addr, uint64_t len)
{
    return addr <= m->mem_size && len <= m->mem_size - addr;
}

/* An EPT pointer (or IOMMU root): reserved bits, levels, the root in RAM. */
const char *ept_root_error(const struct p64_machine *m, uint64_t ptr)
{
    if (ptr & EPTP_RESERVED)
        return "reserved bits set (only bits 51:12, the root, and 1:0, levels - 2, exist)";
    if ((ptr & 3) == 3)
        return "levels - 2 = 3 is reserved";
    if (!in_ram(m, ptr & CR3_FRAME, PAGE_SIZE))
        return "the root table is beyond RAM";
    return NULL;
}

static int check_guest_state(struct p64_machine *m, const uint64_t *f)
{
    static const struct {
        uint32_t field;
        unsigned crn;
    } crs[] = {{P64_VMCS_GUEST_CR0, 0}, {P64_VMCS_GUEST_CR3, 3}, {P64_VMCS_GUEST_CR4, 4}, {P64_VMCS_GUEST_CR8, 8}};
    if (f[P64_VMCS_GUEST_CPL] > 3)
        return refuse(m, P64_VMCS_GUEST_CPL, f[P64_VMCS_GUEST_CPL], "must be 0..3");
    if (f[P64_VMCS_GUEST_FLAGS] & ~FLAGS_MASK)
        return refuse(m, P64_VMCS_GUEST_FLAGS, f[P64_VMCS_GUEST_FLAGS], "reserved bits set (only TF, IF and IOPL exist)");
    for (unsigned i = 0; i < 4; i++) {
        const char *why = cr_write_error(crs[i].crn, f[crs[i].field]);
        if (why)
            return refuse(m, crs[i].field, f[crs[i].field], why);
    }
    if (f[P64_VMCS_GUEST_INTERRUPTIBILITY] > 1)
        return refuse(m, P64_VMCS_GUEST_INTERRUPTIBILITY, f[P64_VMCS_GUEST_INTERRUPTIBILITY], "only bit 0 (sti shadow) exists");
    if (f[P64_VMCS_GUEST_ACTIVITY] == ACTIVITY_SHUTDOWN)
        return refuse(m, P64_VMCS_GUEST_ACTIVITY, f[P64_VMCS_GUEST_ACTIVITY],
                      "the guest is shut down (triple fault): give it a new state before entering it");
    if (f[P64_VMCS_GUEST_ACTIVITY] > ACTIVITY_HLT)
        return refuse(m, P64_VMCS_GUEST_ACTIVITY, f[P64_VMCS_GUEST_ACTIVITY], "must be 0 (active) or 1 (halted)");
    if (f[P64_VMCS_GUEST_PENDING_DB] > 1)
        return refuse(m, P64_VMCS_GUEST_PENDING_DB, f[P64_VMCS_GUEST_PENDING_DB], "must be 0 or 1");
    return P64_OK;
}

static int check_injection(struct p64_machine *m, const uint64_t *f)
{
    uint64_t info = f[P64_VMCS_ENTRY_INTR_INFO];
    unsigned vector = info & 255, type = (info >> 8) & 7;
    if (!(info & INTR_VALID))
        return P64_OK;
    if (info & ~(INTR_VALID | INTR_HAS_ERROR | 0x7ffull))
        return reserved(m, P64_VMCS_ENTRY_INTR_INFO, info, INTR_VALID | INTR_HAS_ERROR | 0x7ffull);
    if (type != INTR_TYPE_EXTERNAL && type != INTR_TYPE_HARDWARE && type != INTR_TYPE_SOFTWARE)
        return refuse(m, P64_VMCS_ENTRY_INTR_INFO, info,
                      "type (bits 10:8) must be 0 (external), 3 (hardware exception) or 4 (software interrupt)");
    if (type == INTR_TYPE_EXTERNAL && vector < 32)
        return refuse(m, P64_VMCS_ENTRY_INTR_INFO, info, "an external interrupt's vector must be 32..255");
    if (type == INTR_TYPE_HARDWARE && vector >= 32)
        return refuse(m, P64_VMCS_ENTRY_INTR_INFO, info, "a hardware exception's vector must be 0..31");
    int has = type == INTR_TYPE_HARDWARE && (ERROR_CODE_VECTORS >> vector & 1);
    if (!!(info & INTR_HAS_ERROR) != has)
        return refuse(m, P64_VMCS_ENTRY_INTR_INFO, info,
                      has ? "this exception has an error code: bit 11 must be set"
                          : "bit 11 (error code) set on an event without an error code");
    return P64_OK;
}

static int entry_checks(struct p64_machine *m, const struct p64_vmcs *v)
{
    const uint64_t *f = v->f, pc = f[P64_VMCS_PROC_CONTROLS];
    int rc;
    if ((rc = reserved(m, P64_VMCS_PIN_CONTROLS, f[P64_VMCS_PIN_CONTROLS], PIN_DEFINED)) ||
        (rc = reserved(m, P64_VMCS_PROC_CONTROLS, pc, PROC_DEFINED)) ||
        (rc = needs_feature(m, pc, P64_PROC_USE_TPR_SHADOW, P64_F_TPR_SHADOW, "PROC_USE_TPR_SHADOW", "tpr_shadow")) ||
        (rc = needs_feature(m, pc, P64_PROC_ENABLE_EPT, P64_F_EPT, "PROC_ENABLE_EPT", "ept")) ||
        (rc = needs_feature(m, pc, P64_PROC_ENABLE_VPID, P64_F_VPID, "PROC_ENABLE_VPID", "vpid")))
        return rc;
    if (f[P64_VMCS_EXCEPTION_BITMAP] >> 32)
        return reserved(m, P64_VMCS_EXCEPTION_BITMAP, f[P64_VMCS_EXCEPTION_BITMAP], 0xffffffffull);
    if (pc >> P64_PROC_ENABLE_VPID & 1) {
        if (f[P64_VMCS_VPID] == 0)
            return refuse(m, P64_VMCS_VPID, 0, "must be non-zero with PROC_ENABLE_VPID (0 is the host's)");
        if (f[P64_VMCS_VPID] > 0xffff)
            return refuse(m, P64_VMCS_VPID, f[P64_VMCS_VPID], "a VPID has 16 bits");
    }
    if (pc >> P64_PROC_ENABLE_EPT & 1) {
        const char *why = ept_root_error(m, f[P64_VMCS_EPT_POINTER]);
        if (why)
            return refuse(m, P64_VMCS_EPT_POINTER, f[P64_VMCS_EPT_POINTER], why);
    }
    if (pc >> P64_PROC_USE_TPR_SHADOW & 1) {
        if (f[P64_VMCS_VIRTUAL_TPR] > CR8_MAX)
            return refuse(m, P64_VMCS_VIRTUAL_TPR, f[P64_VMCS_VIRTUAL_TPR], "a TPR holds 0..15");
        if (f[P64_VMCS_TPR_THRESHOLD] > CR8_MAX)
            return refuse(m, P64_VMCS_TPR_THRESHOLD, f[P64_VMCS_TPR_THRESHOLD], "a TPR threshold holds 0..15");
    }
    const struct {
        unsigned control;
        uint32_t field;
        uint64_t size;
    } bitmaps[] = {{P64_PROC_USE_IO_BITMAPS, P64_VMCS_IO_BITMAP, IO_BITMAP_SIZE},
                   {P64_PROC_USE_MSR_BITMAPS, P64_VMCS_MSR_BITMAP, MSR_BITMAP_SIZE}};
    for (unsigned i = 0; i < 2; i++) {
        uint64_t a = f[bitmaps[i].field];
        if (!(pc >> bitmaps[i].control & 1))
            continue;
        if (a & PAGE_OFFSET)
            return refuse(m, bitmaps[i].field, a, "must be 4 KiB aligned");
        if (!in_ram(m, a, bitmaps[i].size))
            return refuse(m, bitmaps[i].field, a, "the bitmap is beyond RAM");
    }
    if ((rc = check_guest_state(m, f)))
        return rc;
    return check_injection(m, f);
}

/* ---- V.1: entry and exit ---- */

static uint64_t intr_info(const struct event *ev)
{
    unsigned type = ev->kind == P64_EVENT_EXTERNAL   ? INTR_TYPE_EXTERNAL
                    : ev->kind == P64_EVENT_SOFTWARE ? INTR_TYPE_SOFTWARE
                                                     : INTR_TYPE_HARDWARE;
    return ev->vector | (uint64_t)type << 8 | (ev->has_error ? INTR_HAS_ERROR : 0) | INTR_VALID;
}

static uint32_t guest_tag(const struct p64_vmcs *v)
{
    return GUEST_TAG_BASE | (uint32_t)(v->f[P64_VMCS_PROC_CONTROLS] >> P64_PROC_ENABLE_VPID & 1 ? v->f[P64_VMCS_VPID] : 0);
}

static int vpid_on(const struct p64_machine *m)
{
    return proc(m, P64_PROC_ENABLE_VPID);
}

/* The guest-state fields that are a CPU register as they stand (V.2). */
static const struct {
    uint32_t field;
    size_t offset;
} guest_registers[] = {
    {P64_VMCS_GUEST_PC, offsetof(struct p64_cpu, pc)},       {P64_VMCS_GUEST_FLAGS, offsetof(struct p64_cpu, flags)},
    {P64_VMCS_GUEST_CPL, offsetof(struct p64_cpu, cpl)},     {P64_VMCS_GUEST_CR0, offsetof(struct p64_cpu, cr0)},
    {P64_VMCS_GUEST_CR2, offsetof(struct p64_cpu, cr2)},     {P64_VMCS_GUEST_CR3, offsetof(struct p64_cpu, cr3)},
    {P64_VMCS_GUEST_CR4, offsetof(struct p64_cpu, cr4)},     {P64_VMCS_GUEST_IDTR, offsetof(struct p64_cpu, idtr)},
    {P64_VMCS_GUEST_RSP0, offsetof(struct p64_cpu, rsp[0])}, {P64_VMCS_GUEST_RSP1, offsetof(struct p64_cpu, rsp[1])},
    {P64_VMCS_GUEST_RSP2, offsetof(struct p64_cpu, rsp[2])}, {P64_VMCS_GUEST_SEGLIMIT, offsetof(struct p64_cpu, seglimit)},
};

static uint64_t *cpu_register(struct p64_cpu *c, size_t offset)
{
    return (uint64_t *)(void *)((char *)c + offset);
}

static void enter_guest(struct p64_machine *m, struct p64_vmcs *v)
{
    struct vmx_state *x = &m->vmx;
    struct p64_cpu *c = &m->cpu;
    const uint64_t *f = v->f;
    x->host = *c;
    x->v = v;
    x->pin = f[P64_VMCS_PIN_CONTROLS];
    x->proc = f[P64_VMCS_PROC_CONTROLS];
    x->ept = proc(m, P64_PROC_ENABLE_EPT);
    x->eptp = x->ept ? f[P64_VMCS_EPT_POINTER] : 0;
    x->tpr_shadow = proc(m, P64_PROC_USE_TPR_SHADOW);
    x->intr_exiting = (int)(x->pin >> P64_PIN_EXTERNAL_INTERRUPT_EXITING & 1);
    x->window_exiting = proc(m, P64_PROC_INTERRUPT_WINDOW_EXITING);
    x->vectoring_valid = 0;
    x->shadow_held = 0;
    memcpy(c->r, v->regs, sizeof c->r);
    c->r[0] = 0;
    for (size_t i = 0; i < sizeof guest_registers / sizeof guest_registers[0]; i++)
        *cpu_register(c, guest_registers[i].offset) = f[guest_registers[i].field];
    c->cr8 = x->tpr_shadow ? f[P64_VMCS_VIRTUAL_TPR] : f[P64_VMCS_GUEST_CR8];
    /* V.3: the guest's TSC is the machine's plus the offset */
    c->tsc_offset = x->host.tsc_offset + (proc(m, P64_PROC_USE_TSC_OFFSET) ? f[P64_VMCS_TSC_OFFSET] : 0);
    c->halted = f[P64_VMCS_GUEST_ACTIVITY] == ACTIVITY_HLT;
    c->int_shadow = (uint32_t)(f[P64_VMCS_GUEST_INTERRUPTIBILITY] & 1);
    c->shutdown = 0;
    c->pending_db = (uint32_t)f[P64_VMCS_GUEST_PENDING_DB];
    c->vm_tag = guest_tag(v);
    /* intr_vector and intr_acked are the machine's interrupt line: guest mode shares them */
    m->guest = 1;
    update_translating(m);
    if (!vpid_on(m)) { /* V.7: first-generation VT-x flushes at every entry */
        tlb_clear(m);
        m->ctr.vm_transition_flushes++;
    } else if (!v->launched || v->seen_eptp != x->eptp || ((c->cr0 ^ v->seen_cr0) & (CR0_PG | CR0_WP)) ||
               ((c->cr4 ^ v->seen_cr4) & (CR4_PL | CR4_PGE))) {
        tlb_flush_tag(m, c->vm_tag, 0); /* §10 for guest state: host writes take effect */
    } else if (c->cr3 != v->seen_cr3)
        tlb_flush_nonglobal(m);
    fast_enter_set(m, 1);
    fast_sync(m); /* the row may have been filled by another VMCS of the tag, or another mode */
    m->fetch_valid = 0;
    m->ctr.vm_entries++;
}

static void leave_guest(struct p64_machine *m, struct p64_vmcs *v)
{
    struct vmx_state *x = &m->vmx;
    struct p64_cpu *c = &m->cpu;
    uint64_t *f = v->f;
    for (size_t i = 0; i < sizeof guest_registers / sizeof guest_registers[0]; i++)
        f[guest_registers[i].field] = *cpu_register(c, guest_registers[i].offset);
    f[x->tpr_shadow ? P64_VMCS_VIRTUAL_TPR : P64_VMCS_GUEST_CR8] = c->cr8;
    f[P64_VMCS_GUEST_ACTIVITY] = c->shutdown ? ACTIVITY_SHUTDOWN : c->halted ? ACTIVITY_HLT : 0;
    /* an instruction that exits fault-like runs again: the shadow it ran in is still owed */
    f[P64_VMCS_GUEST_INTERRUPTIBILITY] =
        c->int_shadow | (m->exit.reason == P64_EXIT_VM && x->x.reason != P64_VMEXIT_TRIPLE_FAULT && x->shadow_held);
    x->shadow_held = 0;
    f[P64_VMCS_GUEST_PENDING_DB] = c->pending_db;
    memcpy(v->regs, c->r, sizeof v->regs);
    v->regs[0] = 0;
    v->seen_cr0 = c->cr0, v->seen_cr3 = c->cr3, v->seen_cr4 = c->cr4, v->seen_eptp = x->eptp;
    v->launched = 1;
    if (m->exit.reason == P64_EXIT_VM) {
        const struct vmx_exit *e = &x->x;
        f[P64_VMCS_EXIT_REASON] = e->reason;
        f[P64_VMCS_EXIT_QUALIFICATION] = e->qual;
        f[P64_VMCS_GUEST_LINEAR_ADDRESS] = e->linear;
        f[P64_VMCS_GUEST_PHYSICAL_ADDRESS] = e->physical;
        f[P64_VMCS_EXIT_INTR_INFO] = e->intr_info;
        f[P64_VMCS_EXIT_INTR_ERROR_CODE] = e->intr_error;
        f[P64_VMCS_IDT_VECTORING_INFO] = e->vect_info;
        f[P64_VMCS_IDT_VECTORING_ERROR_CODE] = e->vect_error;
        f[P64_VMCS_EXIT_INSTRUCTION_LENGTH] = e->insn_len;
        f[P64_VMCS_EXIT_INSTRUCTION_WORD] = e->insn_word;
        m->ctr.vm_exits[e->reason % P64_VMEXIT_REASONS]++;
    }
    /* the guest's TSC writes (MSR 0x10 let through) moved the machine's TSC (V.3) */
    uint64_t host_offset = c->tsc_offset - (proc(m, P64_PROC_USE_TSC_OFFSET) ? f[P64_VMCS_TSC_OFFSET] : 0);
    int32_t vector = c->intr_vector, acked = c->intr_acked;
    int flush = !vpid_on(m);
    *c = x->host;
    c->tsc_offset = host_offset;
    c->intr_vector = vector, c->intr_acked = acked;
    m->guest = 0;
    x->v = NULL;
    x->ept = x->intr_exiting = x->window_exiting = x->tpr_shadow = 0;
    x->proc = x->pin = 0;
    x->vectoring_valid = 0;
    update_translating(m);
    if (flush) {
        tlb_clear(m);
        m->ctr.vm_transition_flushes++;
    }
    fast_enter_set(m, 0);
    fast_sync(m);
    m->fetch_valid = 0;
}

/* V.9: the injected event, as native delivery would deliver it (a tick). */
static int inject(struct p64_machine *m, struct p64_vmcs *v)
{
    uint64_t info = v->f[P64_VMCS_ENTRY_INTR_INFO];
    unsigned type = (info >> 8) & 7;
    struct event ev = {(uint32_t)(info & 255),
                       type == INTR_TYPE_EXTERNAL   ? P64_EVENT_EXTERNAL
                       : type == INTR_TYPE_SOFTWARE ? P64_EVENT_SOFTWARE
                                                    : P64_EVENT_FAULT,
                       (info & INTR_HAS_ERROR) != 0, m->cpu.pc, v->f[P64_VMCS_ENTRY_ERROR_CODE], 0};
    if (type == INTR_TYPE_SOFTWARE)
        ev.pc += 4; /* as if the `int n` at GUEST_PC executed: it pushes the next pc (V.9) */
    v->f[P64_VMCS_ENTRY_INTR_INFO] = info & ~INTR_VALID;
    m->ctr.ticks++;
    m->clock++;
    int rc = deliver_event(m, &ev);
    /* A shadow an exit kept is spent once an event is delivered — except by a #DB: P64's only
     * #DB is the pending single-step trap, delivered at §6.5 step 2, which natively leaves the
     * shadow to step 3 (an injected #DB replays that delivery). */
    if (rc == DELIVER_OK && !(type == INTR_TYPE_HARDWARE && ev.vector == V_DB))
        m->cpu.int_shadow = 0;
    return rc;
}

/* Leave guest mode at the end of a run (end_call) or at p64_close (§10).  `paused`: the CPU
 * as the run paused, when it is closed: a CPU the host wrote while the run was open reaches the
 * VMCS as a host write of guest state after the exit, which the next entry notices (V.7). */
void vmx_leave(struct p64_machine *m, const struct p64_cpu *paused)
{
    struct p64_vmcs *v = m->vmx.v;
    leave_guest(m, v);
    if (paused)
        v->seen_cr0 = paused->cr0, v->seen_cr3 = paused->cr3, v->seen_cr4 = paused->cr4;
}

int p64_vmrun_slice(struct p64_machine *m, struct p64_vmcs *v, uint64_t budget, uint64_t slice)
{
    if (!has_feature(m, P64_F_VMX))
        return p64_error(m, P64_ERR_VMX, "vmrun: this machine's profile has no vmx feature");
    if (!v || v->owner != m)
        return p64_error(m, P64_ERR_VMX, "vmrun: the VMCS belongs to another machine");
    if (m->open)
        return refuse_open(m, "vmrun");
    if (!slice)
        return p64_error(m, P64_ERR_RANGE, "vmrun: slice = 0: a slice runs at least one tick");
    if (!check_state(m))
        return P64_ERR_STATE;
    int rc = entry_checks(m, v);
    if (rc)
        return rc;
    begin_run(m); /* the host's own writes take effect first (§10) */
    end_run(m);
    uint64_t left = run_budget(m, budget);
    enter_guest(m, v);
    int injected = DELIVER_OK;
    if ((v->f[P64_VMCS_ENTRY_INTR_INFO] & INTR_VALID) && left > 0) {
        injected = inject(m, v);
        left--;
        if (slice != NO_SLICE)
            slice--; /* the injection's tick is the slice's first */
    }
    if (injected != DELIVER_EXIT)
        left = run_loop(m, left, slice);
    return end_call(m, left);
}

int p64_vmrun(struct p64_machine *m, struct p64_vmcs *v, uint64_t budget)
{
    return p64_vmrun_slice(m, v, budget, NO_SLICE);
}

/* ---- the exits (V.4, V.5) ---- */

static int finish_exit(struct p64_machine *m)
{
    struct vmx_exit *x = &m->vmx.x;
    if (m->vmx.vectoring_valid) {
        x->vect_info = intr_info(&m->vmx.vectoring);
        x->vect_error = m->vmx.vectoring.has_error ? m->vmx.vectoring.error : 0;
        if (m->vmx.vectoring.kind == P64_EVENT_SOFTWARE)
            x->insn_len = 4; /* the `int n` at GUEST_PC (VT-x: its length, for re-injection) */
    }
    m->vmx.vectoring_valid = 0;
    m->exit.reason = P64_EXIT_VM;
    m->exit.number = x->reason;
    m->exit.qualification = x->qual;
    m->exit.guest_physical = x->physical;
    return DELIVER_EXIT;
}

int vmx_exit(struct p64_machine *m, uint32_t reason, uint64_t qual)
{
    memset(&m->vmx.x, 0, sizeof m->vmx.x);
    m->vmx.x.reason = reason;
    m->vmx.x.qual = qual;
    return finish_exit(m);
}

int vmx_exit_pending(struct p64_machine *m)
{
    return finish_exit(m);
}

int vmx_ept_fault(struct p64_machine *m, uint32_t reason, uint64_t qual, uint64_t gpa, uint64_t va, int va_valid)
{
    struct vmx_exit *x = &m->vmx.x;
    memset(x, 0, sizeof *x);
    x->reason = reason, x->qual = qual, x->physical = gpa, x->linear = va_valid ? va : 0;
    set_fault(m, VEC_VMEXIT, 0, 0, 0);
    return 0;
}

/* V.4: does the exception bitmap turn this exception into a VM exit? */
int vmx_exception_exits(const struct p64_machine *m, const struct event *ev)
{
    if (ev->kind == P64_EVENT_SOFTWARE || ev->kind == P64_EVENT_EXTERNAL || ev->vector >= 32)
        return 0;
    const uint64_t *f = m->vmx.v->f;
    int selected = (int)(f[P64_VMCS_EXCEPTION_BITMAP] >> ev->vector & 1);
    if (ev->vector != V_PF)
        return selected;
    /* VT-x: with bit 14 set a #PF exits when the masked error code matches; clear, when not */
    int match = (ev->error & f[P64_VMCS_PF_ERROR_CODE_MASK]) == f[P64_VMCS_PF_ERROR_CODE_MATCH];
    return selected ? match : !match;
}

int vmx_exception_exit(struct p64_machine *m, const struct event *ev)
{
    struct vmx_exit *x = &m->vmx.x;
    memset(x, 0, sizeof *x);
    x->reason = P64_VMEXIT_EXCEPTION;
    x->intr_info = intr_info(ev);
    x->intr_error = ev->has_error ? ev->error : 0;
    if (ev->vector == V_PF)
        x->qual = x->linear = ev->address; /* guest CR2 is not written (V.5) */
    return finish_exit(m);
}

/* V.3: external-interrupt exiting and interrupt-window exiting, at a boundary outside the
 * sti shadow.  1 if a VM exit was made. */
int vmx_boundary(struct p64_machine *m)
{
    struct p64_cpu *c = &m->cpu;
    if (c->int_shadow)
        return 0;
    if (m->vmx.intr_exiting && c->intr_vector >= 0) {
        struct event ev = {(uint32_t)c->intr_vector, P64_EVENT_EXTERNAL, 0, c->pc, 0, 0};
        c->intr_acked = c->intr_vector; /* acknowledged, as native delivery would (§6.5) */
        c->intr_vector = -1;
        vmx_exit(m, P64_VMEXIT_EXTERNAL_INTERRUPT, 0);
        m->vmx.x.intr_info = intr_info(&ev);
        return 1;
    }
    if (m->vmx.window_exiting && (c->flags & FLAGS_IF)) {
        vmx_exit(m, P64_VMEXIT_INTERRUPT_WINDOW, 0);
        return 1;
    }
    return 0;
}

int vmx_io_exits(const struct p64_machine *m, uint64_t port)
{
    if (proc(m, P64_PROC_USE_IO_BITMAPS)) /* the bitmaps take precedence (VT-x) */
        return m->mem[m->vmx.v->f[P64_VMCS_IO_BITMAP] + port / 8] >> (port % 8) & 1;
    return proc(m, P64_PROC_UNCONDITIONAL_IO_EXITING);
}

int vmx_msr_exits(const struct p64_machine *m, uint64_t index, int write)
{
    if (!proc(m, P64_PROC_USE_MSR_BITMAPS) || index > MSR_BITMAP_LIMIT)
        return 1;
    uint64_t byte = m->vmx.v->f[P64_VMCS_MSR_BITMAP] + (write ? MSR_BITMAP_SIZE / 2 : 0) + index / 8;
    return m->mem[byte] >> (index % 8) & 1;
}

/* V.3: CR0/CR4 bits owned by the host read from the read shadow. */
uint64_t vmx_read_cr(const struct p64_machine *m, unsigned crn)
{
    const uint64_t *f = m->vmx.v->f;
    if (crn == 0)
        return (m->cpu.cr0 & ~f[P64_VMCS_CR0_GUEST_HOST_MASK]) | (f[P64_VMCS_CR0_READ_SHADOW] & f[P64_VMCS_CR0_GUEST_HOST_MASK]);
    if (crn == 4)
        return (m->cpu.cr4 & ~f[P64_VMCS_CR4_GUEST_HOST_MASK]) | (f[P64_VMCS_CR4_READ_SHADOW] & f[P64_VMCS_CR4_GUEST_HOST_MASK]);
    return read_cr(m, crn);
}

/* ---- V.6: the page-walk cache (pwc), fully associative, FIFO ---- */

const struct pwc_entry *vmx_pwc_find(const struct p64_machine *m, int dim, unsigned level, uint64_t key, uint64_t tag)
{
    for (unsigned i = 0; i < PWC_ENTRIES; i++) {
        const struct pwc_entry *c = &m->nested.pwc[i];
        if (c->valid && c->dim == dim && c->level == level && c->key == key && c->tag == tag)
            return c;
    }
    return NULL;
}

void vmx_pwc_insert(struct p64_machine *m, int dim, unsigned level, uint64_t key, uint64_t tag, uint64_t value,
                    unsigned perm)
{
    struct pwc_entry *c = (struct pwc_entry *)vmx_pwc_find(m, dim, level, key, tag);
    if (!c) {
        c = &m->nested.pwc[m->nested.pwc_next];
        m->nested.pwc_next = (m->nested.pwc_next + 1) % PWC_ENTRIES;
    }
    c->valid = 1, c->dim = (uint8_t)dim, c->level = (uint8_t)level, c->perm = (uint8_t)perm;
    c->key = key, c->tag = tag, c->value = value;
}

int p64_invept(struct p64_machine *m)
{
    if (m->open)
        return refuse_open(m, "invept");
    if (!has_feature(m, P64_F_EPT))
        return p64_error(m, P64_ERR_VMX, "invept: this machine's profile has no ept feature");
    memset(m->nested.ntlb, 0, sizeof m->nested.ntlb);
    pwc_flush(m, 1, 0, 0);
    tlb_flush_tag(m, 0, 1); /* combined translations of every guest tag */
    return P64_OK;
}

int p64_invvpid(struct p64_machine *m, uint32_t vpid)
{
    if (m->open)
        return refuse_open(m, "invvpid");
    if (!has_feature(m, P64_F_VPID))
        return p64_error(m, P64_ERR_VMX, "invvpid: this machine's profile has no vpid feature");
    if (vpid == 0 || vpid > 0xffff)
        return p64_error(m, P64_ERR_VMX, "invvpid: vpid = %u: must be 1..65535", vpid);
    tlb_flush_tag(m, GUEST_TAG_BASE | vpid, 0);
    return P64_OK;
}

/* ---- V.10: DMA remapping ---- */

static int check_device(struct p64_machine *m, uint32_t device, const char *what)
{
    if (m->open)
        return refuse_open(m, what);
    if (!has_feature(m, P64_F_IOMMU))
        return p64_error(m, P64_ERR_VMX, "%s: this machine's profile has no iommu feature", what);
    if (device >= P64_IOMMU_DEVICES)
        return p64_error(m, P64_ERR_VMX, "%s: device %u: device ids are 0..%u", what, device, P64_IOMMU_DEVICES - 1);
    return P64_OK;
}

int p64_iommu_attach(struct p64_machine *m, uint32_t device, uint64_t root)
{
    int rc = check_device(m, device, "iommu attach");
    if (rc)
        return rc;
    const char *why = ept_root_error(m, root);
    if (why)
        return p64_error(m, P64_ERR_VMX, "iommu attach: root = %#llx: %s", (unsigned long long)root, why);
    m->nested.iommu_root[device] = root;
    m->nested.iommu_attached |= 1u << device;
    return P64_OK;
}

int p64_iommu_detach(struct p64_machine *m, uint32_t device)
{
    int rc = check_device(m, device, "iommu detach");
    if (!rc)
        m->nested.iommu_attached &= ~(1u << device);
    return rc;
}

static void log_fault(struct p64_machine *m, uint32_t device, uint64_t addr, uint32_t write, int why)
{
    struct vmx_persist *n = &m->nested;
    if (n->nfaults == P64_IOMMU_FAULT_LOG) { /* keep the newest */
        memmove(n->faults, n->faults + 1, sizeof n->faults - sizeof n->faults[0]);
        n->nfaults--;
    }
    struct p64_iommu_fault *fl = &n->faults[n->nfaults++];
    memset(fl, 0, sizeof *fl);
    fl->device = device, fl->write = write, fl->address = addr;
    fl->reason = why == 1 ? 0u : why == 2 ? 1u : 2u;
    m->ctr.iommu_faults++;
}

/* A device's DMA of len bytes at device address addr: through the device's domain when it is
 * attached, else to physical memory directly.  *refused = 1 when the IOMMU refused it.
 *
 * V.10: every page is translated before any byte moves, and the bytes move through those
 * translations.  A DMA that writes the domain's own tables changes the translation of later
 * DMAs, not its own: the second page of a write whose first page rewrites the second page's
 * entry still lands where that entry pointed, with the permission it gave, when the DMA began. */
int p64_dma(struct p64_machine *m, uint32_t device, uint64_t addr, uint8_t *buf, uint64_t len, uint32_t write,
            uint32_t *refused)
{
    *refused = 0;
    if (m->open)
        return refuse_open(m, "dma");
    int attached = device < P64_IOMMU_DEVICES && has_feature(m, P64_F_IOMMU) && (m->nested.iommu_attached >> device & 1);
    if (!attached) {
        if (device >= P64_IOMMU_DEVICES)
            return check_device(m, device, "dma");
        return write ? p64_write_phys(m, addr, buf, len) : p64_read_phys(m, addr, buf, len);
    }
    if (!len)
        return P64_OK;
    uint64_t root = m->nested.iommu_root[device], refs = 0;
    const unsigned need = write ? (unsigned)EPT_W : (unsigned)EPT_R;
    if (addr + len < addr) {
        log_fault(m, device, addr, write, 1);
        *refused = 1;
        return P64_OK;
    }
    /* the pages of [addr, addr + len): the buffer holds len bytes, so their number fits */
    const uint64_t pages = ((addr + len - 1) >> PAGE_SHIFT) - (addr >> PAGE_SHIFT) + 1;
    uint64_t *frame = malloc((size_t)pages * sizeof *frame);
    if (!frame)
        return p64_error(m, P64_ERR_NOMEM, "dma: out of memory for the translations of %llu pages",
                         (unsigned long long)pages);
    uint64_t a = addr;
    for (uint64_t i = 0; i < pages; i++, a = (a | PAGE_OFFSET) + 1) {
        unsigned perm;
        int why = nested_walk(m, root, a, need, &frame[i], &perm, &refs);
        if (why) {
            log_fault(m, device, a, write, why);
            *refused = 1;
            free(frame);
            return P64_OK;
        }
        frame[i] &= PAGE_MASK; /* nested_walk: a host-physical address in RAM */
    }
    a = addr;
    for (uint64_t i = 0, done = 0; i < pages; i++) {
        uint64_t offset = a & PAGE_OFFSET, piece = PAGE_SIZE - offset;
        if (piece > len - done)
            piece = len - done;
        uint64_t hpa = frame[i] | offset;
        m->ctr.iommu_translations++;
        if (write) {
            memcpy(m->mem + hpa, buf + done, (size_t)piece);
            dcache_drop_range(m, hpa, piece);
        } else
            memcpy(buf + done, m->mem + hpa, (size_t)piece);
        a += piece, done += piece;
    }
    free(frame);
    return P64_OK;
}

uint32_t p64_iommu_take_faults(struct p64_machine *m, struct p64_iommu_fault *out, uint32_t max)
{
    struct vmx_persist *n = &m->nested;
    uint32_t k = n->nfaults < max ? n->nfaults : max;
    memcpy(out, n->faults, k * sizeof *out);
    memmove(n->faults, n->faults + k, (n->nfaults - k) * sizeof *out);
    n->nfaults -= k;
    return k;
}
