/* Interrupts and exceptions (§6): delivery through the IDT, host gates, nested faults (#DF,
 * triple fault), the single-step trap and external interrupts.
 *
 * §6.6 read the x86 way, as the executable spec does: a fault while delivering `int n` is the
 * instruction's own fault; one while delivering an external interrupt is delivered as a fault
 * at the interrupted instruction; one while delivering an exception becomes #DF, and one while
 * delivering #DF shuts the machine down. */
#include "core.h"

#define GATE_SIZE 16
#define STACK_ALIGN 0xfull

void set_fault(struct p64_machine *m, uint32_t vector, uint32_t has_error, uint64_t error, uint64_t address)
{
    m->fault.vector = vector, m->fault.has_error = has_error;
    m->fault.error = error, m->fault.address = address;
}

static int fail(struct p64_machine *m, uint32_t vector, uint64_t error)
{
    set_fault(m, vector, 1, error, 0);
    return DELIVER_FAULT;
}

/* §13: deliveries that reached a handler or a host gate, by vector. */
static void count(struct p64_machine *m, const struct event *ev)
{
    if (ev->kind == P64_EVENT_EXTERNAL)
        m->ctr.interrupts[ev->vector]++;
    else
        m->ctr.exceptions[ev->vector]++;
}

/* §6.3 step 4: no frame; CPL, FLAGS and sp unchanged; pc = the event's pushed pc. */
static int exit_to_host(struct p64_machine *m, const struct event *ev)
{
    struct p64_exit *x = &m->exit;
    m->cpu.pc = ev->pc;
    m->cpu.halted = 0;
    m->ctr.host_gate_exits++;
    count(m, ev);
    x->reason = P64_EXIT_HOST_GATE;
    x->vector = ev->vector, x->kind = ev->kind, x->has_error = ev->has_error;
    x->error_code = ev->has_error ? ev->error : 0;
    x->address = ev->address;
    return DELIVER_EXIT;
}

/* §6.3 step 7: push sp, FLAGS, cs, pc and the error code as stores at CPL ring. */
static int push_frame(struct p64_machine *m, const struct event *ev, unsigned ring, uint64_t *sp)
{
    uint64_t frame[5] = {m->cpu.r[SP], m->cpu.flags, m->cpu.cpl, ev->pc, ev->error};
    unsigned n = ev->has_error ? 5 : 4;
    for (unsigned i = 0; i < n; i++) {
        *sp -= 8;
        if (!store_slow(m, *sp, 8, ring, frame[i]))
            return 0;
    }
    return 1;
}

/* §6.3 steps 1-8 for one event. */
static int deliver(struct p64_machine *m, const struct event *ev)
{
    struct p64_cpu *c = &m->cpu;
    uint64_t entry = c->idtr + GATE_SIZE * (uint64_t)ev->vector, handler, attr;
    uint64_t ext = ev->kind != P64_EVENT_SOFTWARE, selector = 8ull * ev->vector + 2;
    if (!load_slow(m, entry, 8, 0, &handler) || !load_slow(m, entry + 8, 8, 0, &attr))
        return DELIVER_FAULT; /* step 1: supervisor reads, never limited (§5.3) */
    unsigned type = (attr >> 1) & 3, dpl = (attr >> 4) & 3, ring = (attr >> 6) & 3;
    if (!(attr & GATE_P) || type == GATE_RESERVED || (type == GATE_HOST && m->guest))
        return fail(m, V_GP, selector + ext); /* step 2; a host gate is reserved in guest mode (V.2) */
    if (ev->kind == P64_EVENT_SOFTWARE && c->cpl > dpl)
        return fail(m, V_GP, selector); /* step 3 */
    if (type == GATE_HOST)
        return exit_to_host(m, ev); /* step 4 */
    if (ring > c->cpl)
        return fail(m, V_GP, selector + ext); /* step 5 */
    uint64_t sp = (ring < c->cpl ? c->rsp[ring] : c->r[SP]) & ~STACK_ALIGN; /* step 6 */
    if (!push_frame(m, ev, ring, &sp))
        return DELIVER_FAULT; /* step 7 */
    c->r[SP] = sp; /* step 8 */
    c->cpl = ring;
    c->pc = handler;
    c->flags &= ~(type == GATE_INTERRUPT ? FLAGS_TF | FLAGS_IF : FLAGS_TF);
    c->halted = 0;
    m->vmx.shadow_held = 0;
    count(m, ev);
    return DELIVER_OK;
}

/* deliver, remembering in guest mode the event whose delivery failed (V.5). */
static int deliver_tracked(struct p64_machine *m, const struct event *ev)
{
    m->vmx.vectoring_valid = 0;
    int rc = deliver(m, ev);
    if (rc == DELIVER_FAULT && m->guest)
        m->vmx.vectoring = *ev, m->vmx.vectoring_valid = 1;
    return rc;
}

/* §7.5, §6.6: a #PF leaves its address in CR2, nested ones too. */
static void record_fault(struct p64_machine *m)
{
    if (m->fault.vector == V_PF)
        m->cpu.cr2 = m->fault.address;
}

/* The fault in m->fault as an event at pc. */
static struct event fault_event(const struct p64_machine *m, uint64_t pc)
{
    struct event ev = {m->fault.vector, P64_EVENT_FAULT, m->fault.has_error, pc, m->fault.error,
                       m->fault.address};
    return ev;
}

/* A fault in the delivery of ev (in m->fault) that guest mode turns into a VM exit: a nested
 * table failure, or an exception the bitmap selects (V.5: ev is the IDT-vectoring event). */
static int nested_fault_exits(struct p64_machine *m, uint64_t pc)
{
    if (!m->guest)
        return 0;
    if (m->fault.vector == VEC_VMEXIT)
        return 1;
    struct event f = fault_event(m, pc);
    return vmx_exception_exits(m, &f);
}

static int nested_fault_exit(struct p64_machine *m, uint64_t pc)
{
    if (m->fault.vector == VEC_VMEXIT)
        return vmx_exit_pending(m);
    struct event f = fault_event(m, pc);
    return vmx_exception_exit(m, &f);
}

/* §6.6: a fault in #DF's delivery shuts the CPU down. */
static int shut_down(struct p64_machine *m)
{
    record_fault(m);
    m->cpu.shutdown = 1;
    m->ctr.triple_faults++;
    if (m->guest) {
        m->vmx.vectoring_valid = 0; /* a triple fault has no IDT-vectoring information (V.5) */
        return vmx_exit(m, P64_VMEXIT_TRIPLE_FAULT, 0);
    }
    m->exit.reason = P64_EXIT_SHUTDOWN;
    return DELIVER_EXIT;
}

/* §6.6 after the first delivery: a fault in it makes #DF, one in #DF's shuts down; in guest
 * mode each such fault may exit first (V.5).  A #DF the host injected (V.9) is #DF's delivery
 * already: a fault in it shuts down, counting no second #DF. */
static int deliver_nested(struct p64_machine *m, const struct event *ev)
{
    int rc = deliver_tracked(m, ev);
    if (rc != DELIVER_FAULT)
        return rc;
    if (nested_fault_exits(m, ev->pc))
        return nested_fault_exit(m, ev->pc);
    if (ev->vector == V_DF && ev->kind != P64_EVENT_SOFTWARE)
        return shut_down(m);
    record_fault(m);
    m->ctr.double_faults++;
    struct event df = {V_DF, P64_EVENT_ABORT, 1, ev->pc, 0, 0};
    if (m->guest && vmx_exception_exits(m, &df))
        return vmx_exception_exit(m, &df);
    rc = deliver_tracked(m, &df);
    if (rc != DELIVER_FAULT)
        return rc;
    if (nested_fault_exits(m, ev->pc))
        return nested_fault_exit(m, ev->pc);
    return shut_down(m);
}

/* §6.6: an exception; in guest mode, first the exception bitmap (V.4). */
static int deliver_exception(struct p64_machine *m, const struct event *ev)
{
    m->fetch_valid = 0;
    if (m->guest && vmx_exception_exits(m, ev))
        return vmx_exception_exit(m, ev);
    return deliver_nested(m, ev);
}

/* §6.1: the fault in m->fault, raised by the instruction at pc.  A fault that guest mode
 * turns into a VM exit leaves CR2 alone (V.5). */
int deliver_fault(struct p64_machine *m, uint64_t pc)
{
    struct event ev = fault_event(m, pc);
    m->fetch_valid = 0;
    if (nested_fault_exits(m, pc))
        return nested_fault_exit(m, pc);
    record_fault(m);
    return deliver_nested(m, &ev);
}

/* docs/vmx.md V.9: an event injected at VM entry, delivered as §6.3 delivers it natively (an
 * injected software interrupt as if the `int n` at pc executed); a fault in its delivery is
 * handled as §6.6, at pc (the event is the IDT-vectoring event). */
int deliver_event(struct p64_machine *m, const struct event *ev)
{
    m->fetch_valid = 0;
    if (ev->kind == P64_EVENT_FAULT)
        return deliver_nested(m, ev);
    int rc = deliver_tracked(m, ev);
    if (rc == DELIVER_FAULT) /* the interrupted instruction's, or the injected int n's own */
        return deliver_fault(m, m->cpu.pc);
    return rc;
}

/* §6.4: the pending #DB, a trap whose pushed pc is the next instruction. */
int deliver_single_step(struct p64_machine *m)
{
    struct event ev = {V_DB, P64_EVENT_TRAP, 0, m->cpu.pc, 0, 0};
    m->cpu.pending_db = 0;
    return deliver_exception(m, &ev);
}

/* §6.5: the pending vector V is taken when IF = 1 and V >> 4 > CR8. */
int interrupt_deliverable(const struct p64_cpu *c)
{
    return c->intr_vector >= 0 && (c->flags & FLAGS_IF) && (uint64_t)(c->intr_vector >> 4) > c->cr8;
}

/* §6.5: acknowledge the pending vector, then deliver it at pc. */
int deliver_external(struct p64_machine *m)
{
    struct event ev = {(uint32_t)m->cpu.intr_vector, P64_EVENT_EXTERNAL, 0, m->cpu.pc, 0, 0};
    m->cpu.intr_acked = m->cpu.intr_vector;
    m->cpu.intr_vector = -1;
    m->fetch_valid = 0;
    int rc = deliver_tracked(m, &ev);
    if (rc == DELIVER_FAULT)
        return deliver_fault(m, ev.pc);
    return rc;
}

/* `int n`: pushed pc = the next instruction; DELIVER_FAULT leaves the fault in m->fault. */
int deliver_software(struct p64_machine *m, unsigned vector, uint64_t next_pc)
{
    struct event ev = {vector, P64_EVENT_SOFTWARE, 0, next_pc, 0, 0};
    m->fetch_valid = 0;
    return deliver_tracked(m, &ev);
}
