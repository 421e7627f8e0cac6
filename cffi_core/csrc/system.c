/* The system instructions' rules: privilege classes and `classic` (§4), control registers and
 * their TLB flushes (§2, §8.1), MSRs (§2) and the POPF rules for FLAGS (§6.4). */
#include "core.h"

static const uint8_t privilege_of[256] = {
#define X(name, NAME, opcode, fmt, priv, sens, used) [opcode] = priv,
    P64_INSNS(X)
#undef X
};

static const uint8_t sensitivity_of[256] = {
#define X(name, NAME, opcode, fmt, priv, sens, used) [opcode] = sens,
    P64_INSNS(X)
#undef X
};

/* §4.2, §4.4: 0 if the instruction may run at the current CPL, else the vector it raises. */
unsigned privilege_fault(const struct p64_machine *m, unsigned opcode)
{
    unsigned priv = privilege_of[opcode & 255], sens = sensitivity_of[opcode & 255];
    uint64_t cpl = m->cpu.cpl;
    if (priv == P64_PRIV_NEVER || priv == P64_PRIV_VMX)
        return V_UD; /* ud; vmcall outside guest mode */
    if (cpl == 0)
        return 0;
    if (has_feature(m, P64_F_CLASSIC) && (sens == P64_SENS_SENSITIVE || sens == P64_SENS_PRIVILEGED))
        return V_GP;
    switch (priv) {
    case P64_PRIV_KERNEL: return V_GP;
    case P64_PRIV_IOPL: return cpl > IOPL(m->cpu.flags) ? V_GP : 0;
    case P64_PRIV_TSD: return (m->cpu.cr4 & CR4_TSD) ? V_GP : 0;
    case P64_PRIV_HOST: return cpl > 1 ? V_GP : 0;
    default: return 0;
    }
}

/* §2: why writing value to CRn raises #GP(0), or NULL if the write is allowed. */
const char *cr_write_error(unsigned crn, uint64_t value)
{
    switch (crn) {
    case 0:
        if (!(value & CR0_PE))
            return "CR0.PE is always 1";
        return value & ~CR0_MASK ? "reserved CR0 bits set (only PE, TS, WP, PG exist)" : NULL;
    case 3: return value & ~CR3_FRAME ? "CR3 bits 11:0 or 63:52 set" : NULL;
    case 4:
        if (value & ~CR4_MASK)
            return "reserved CR4 bits set (only PL, TSD, PGE exist)";
        return (value & CR4_PL) == CR4_PL ? "CR4.PL = 3 is reserved" : NULL;
    case 8: return value > CR8_MAX ? "CR8 holds 0..15" : NULL;
    default: return NULL;
    }
}

/* A paging-mode change flushes everything (§2); in guest mode, everything of the guest's tag
 * (docs/vmx.md V.7). */
static void flush_context(struct p64_machine *m)
{
    if (m->guest) {
        tlb_flush_tag(m, m->cpu.vm_tag, 0);
        m->ctr.tlb_full_flushes++;
    } else
        tlb_flush_all(m);
}

/* mtcr: 0 if the value raises #GP(0).  Flushes as §2 and §8.1 say. */
int write_cr(struct p64_machine *m, unsigned crn, uint64_t value)
{
    struct p64_cpu *c = &m->cpu;
    if (cr_write_error(crn, value))
        return 0;
    switch (crn) {
    case 0: {
        int changed = ((c->cr0 ^ value) & (CR0_PG | CR0_WP)) != 0;
        c->cr0 = value;
        update_translating(m);
        fast_sync(m);
        if (changed)
            flush_context(m);
        break;
    }
    case 2: c->cr2 = value; break;
    case 3:
        c->cr3 = value;
        tlb_flush_nonglobal(m);
        break;
    case 4: {
        int changed = ((c->cr4 ^ value) & (CR4_PL | CR4_PGE)) != 0;
        c->cr4 = value;
        if (changed)
            flush_context(m);
        break;
    }
    default: c->cr8 = value; break;
    }
    return 1;
}

uint64_t read_cr(const struct p64_machine *m, unsigned crn)
{
    switch (crn) {
    case 0: return m->cpu.cr0;
    case 2: return m->cpu.cr2;
    case 3: return m->cpu.cr3;
    case 4: return m->cpu.cr4;
    default: return m->cpu.cr8;
    }
}

/* rdmsr: 0 if there is no such MSR (#GP(0)); now = the clock before this tick (§9). */
int read_msr(struct p64_machine *m, uint64_t index, uint64_t now, uint64_t *out)
{
    if (index == MSR_TSC)
        *out = now + m->cpu.tsc_offset;
    else if (index >= MSR_RSP0 && index <= MSR_RSP2)
        *out = m->cpu.rsp[index - MSR_RSP0];
    else if (index == MSR_SEGLIMIT && has_feature(m, P64_F_SEGLIMIT))
        *out = m->cpu.seglimit;
    else if (index == MSR_CSLIMIT && has_feature(m, P64_F_SEGLIMIT) && !m->guest)
        *out = m->cpu.cslimit;
    else if (index == MSR_GSBASE && !m->guest) /* host state, on every profile (§2, vmx.md V.2) */
        *out = m->cpu.gsbase;
    else if (index == MSR_GSLIMIT && !m->guest)
        *out = m->cpu.gslimit;
    else
        return 0;
    return 1;
}

/* wrmsr: 0 if there is no such MSR; a TSC write sets the offset so the TSC reads value now. */
int write_msr(struct p64_machine *m, uint64_t index, uint64_t value, uint64_t now)
{
    if (index == MSR_TSC)
        m->cpu.tsc_offset = value - now;
    else if (index >= MSR_RSP0 && index <= MSR_RSP2)
        m->cpu.rsp[index - MSR_RSP0] = value;
    else if (index == MSR_SEGLIMIT && has_feature(m, P64_F_SEGLIMIT)) {
        m->cpu.seglimit = value;
        fast_sync(m);
    } else if (index == MSR_CSLIMIT && has_feature(m, P64_F_SEGLIMIT) && !m->guest) {
        m->cpu.cslimit = value;
        fast_sync(m);
    } else if (index == MSR_GSBASE && !m->guest) /* the GS fast arrays hold linear pages: still valid */
        m->cpu.gsbase = value;
    else if (index == MSR_GSLIMIT && !m->guest)
        m->cpu.gslimit = value;
    else
        return 0;
    return 1;
}

/* §6.4, the POPF rules: TF is written; IF only if CPL <= IOPL; IOPL only at CPL 0. */
uint64_t flags_after_pop(const struct p64_cpu *c, uint64_t popped)
{
    uint64_t flags = (c->flags & ~FLAGS_TF) | (popped & FLAGS_TF);
    if (c->cpl <= IOPL(c->flags))
        flags = (flags & ~FLAGS_IF) | (popped & FLAGS_IF);
    if (c->cpl == 0)
        flags = (flags & ~FLAGS_IOPL) | (popped & FLAGS_IOPL);
    return flags;
}
