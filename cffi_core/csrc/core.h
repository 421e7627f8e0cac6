/* Private to the core: struct p64_machine, the decoded-instruction format, constants of the
 * manual and the functions the core's files share (docs/architecture.md). */
#ifndef P64_CORE_H
#define P64_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p64.h"
#include "isa.h"

_Static_assert(P64_OP_SYSTEM_COUNT <= sizeof ((struct p64_counters *)0)->insn_system / sizeof(uint64_t),
               "struct p64_counters.insn_system holds every system-group opcode");

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the P64 core assumes a little-endian host (guest memory is little-endian, §3)"
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NOINLINE __attribute__((noinline))
#define COLD __attribute__((cold, noinline))

#define P64_ABI_VERSION 8u

/* ---- §2: registers ---- */
#define SP 15                          /* r15 is the stack pointer */
#define SINK 16                        /* r[16]: where writes to r0 land */
#define FLAGS_TF (1ull << 8)
#define FLAGS_IF (1ull << 9)
#define FLAGS_IOPL (3ull << 12)
#define FLAGS_MASK (FLAGS_TF | FLAGS_IF | FLAGS_IOPL)
#define IOPL(flags) (((flags) >> 12) & 3)
#define CR0_PE (1ull << 0)
#define CR0_TS (1ull << 3)
#define CR0_WP (1ull << 4)
#define CR0_PG (1ull << 15)
#define CR0_MASK (CR0_PE | CR0_TS | CR0_WP | CR0_PG)
#define CR3_FRAME 0x000ffffffffff000ull /* bits 51:12 */
#define CR4_PL 3ull
#define CR4_TSD (1ull << 2)
#define CR4_PGE (1ull << 7)
#define CR4_MASK (CR4_PL | CR4_TSD | CR4_PGE)
#define CR8_MAX 15
#define MSR_TSC 0x10
#define MSR_RSP0 0x100
#define MSR_RSP2 0x102
#define MSR_SEGLIMIT 0x200
#define MSR_CSLIMIT 0x201
#define MSR_GSBASE 0x202
#define MSR_GSLIMIT 0x203
#define GS_SIZE 8 /* ldgs, sdgs and jgs move 8 bytes (§5.4, the host segment) */

/* ---- §6: vectors, gates ---- */
#define V_DE 0
#define V_DB 1
#define V_UD 6
#define V_DF 8
#define V_GP 13
#define V_PF 14
#define V_AC 17
#define V_MC 18
#define GATE_P 1ull
#define GATE_HOST 2
#define GATE_RESERVED 3
#define GATE_INTERRUPT 0

/* ---- §7: paging ---- */
#define PAGE_SHIFT 12
#define PAGE_SIZE 4096ull
#define PAGE_OFFSET 0xfffull
#define PAGE_MASK (~PAGE_OFFSET)
#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define PTE_A (1ull << 5)
#define PTE_D (1ull << 6)
#define PTE_PS (1ull << 7)
#define PTE_G (1ull << 8)
#define PTE_NX (1ull << 63)
#define PTE_FRAME CR3_FRAME
#define PTE_RESERVED 0x7ff0000000000000ull /* bits 62:52 */
#define PF_P 1u
#define PF_W 2u
#define PF_U 4u
#define PF_RSVD 8u
#define PF_I 16u

/* ---- the decoded-instruction cache (§15) ---- */

/* One predecoded word: 32 bytes, the handler's address first.  Register fields are indices
 * into cpu.r (a write to r0 is redirected to r[16]); imm is the immediate as the body uses
 * it (for in-page branches: the offset in bytes of records).  run is the number of ticks from
 * this word to the end of its straight run (P64_STRAIGHT): the interpreter charges a run's
 * ticks when it enters it, so the straight instructions inside dispatch without a budget check
 * (run.c NEXT, docs/architecture.md §15); 0 for the sentinel and the stub, which take no tick. */
struct dinsn {
    const void *h;
    uint8_t rd, rs1, rs2, aux;
    int32_t imm;     /* after the register fields: one 8-byte load gets both (run.c reg_fields) */
    int64_t run;     /* 64 bits: NEXT subtracts it from the budget left in one instruction */
    uint64_t xl;     /* the translator's (translate.c): executions counted under H_HOT, the entry
                      * of the record's translation under H_JIT, else 0, or 1 for a word the
                      * translator leaves alone; also keeps the record a power of two in size (a
                      * record's index is a shift away from its offset) */
};
_Static_assert(sizeof(struct dinsn) == 32, "struct dinsn is 32 bytes");

#define DPAGE_WORDS 1024
#define DPAGE_MAX 1024 /* decoded pages kept at once; more flushes the whole cache */

struct dpage {
    struct dinsn d[DPAGE_WORDS + 1]; /* + the sentinel that enters the next page */
    uint8_t plain[DPAGE_WORDS + 1];  /* each word's own handler (enum handler_id), before fusion */
    uint16_t hid[DPAGE_WORDS + 1];   /* each word's handler after fusion: d[i].h is labels[hid[i]]
                                      * but where the translator marked the word (H_HOT, H_JIT) */
    uint8_t idle[DPAGE_WORDS];       /* under H_JIT: entries in a row that ran nothing (run.c) */
    uint32_t njit;                   /* words marked H_HOT or H_JIT (0: none to drop) */
    struct dpage *next;              /* free list */
    uint64_t ppn;
    uint32_t slot;                   /* index in machine.dlist */
};

/* Fused pairs (decode.c fuse): an instruction of P64_FUSE_FIRST followed by one of
 * P64_FUSE_SECOND, on the same page, runs as one handler that still takes a tick for each and
 * checks the budget between them (§9).  The first is a plain ALU instruction, ld or sd; the
 * second one of those too, or a direct branch that stays on the page. */
#define P64_FUSE_FIRST(X, Y)                                                                       \
    X(ADD, Y) X(SUB, Y) X(AND, Y) X(OR, Y) X(XOR, Y) X(ADDI, Y) X(ANDI, Y) X(ORI, Y) X(XORI, Y)    \
    X(SHLI, Y) X(SHRI, Y) X(LUI, Y) X(LD, Y) X(SD, Y)
#define P64_FUSE_SECOND(X, A)                                                                      \
    X(A, ADD) X(A, SUB) X(A, AND) X(A, OR) X(A, XOR) X(A, ADDI) X(A, ANDI) X(A, ORI) X(A, XORI)    \
    X(A, SHLI) X(A, SHRI) X(A, LUI) X(A, LD) X(A, SD)                                              \
    X(A, BEQ) X(A, BNE) X(A, BLT) X(A, BGE) X(A, BLTU) X(A, BGEU) X(A, JMP)
/* Straight instructions: they always go on to the next word and can only fault through the slow
 * path of a data access (mmu.c), never raise on their own, so a run of them is charged its ticks
 * at once (struct dinsn.run).  Every pair's first is one, and so is every pair's second but the
 * branches (decode.c checks). */
#define P64_STRAIGHT(X)                                                                            \
    X(ADD) X(SUB) X(AND) X(OR) X(XOR) X(SHL) X(SHR) X(SAR) X(MUL) X(SLT) X(SLTU) X(ADDI) X(ANDI)   \
    X(ORI) X(XORI) X(SHLI) X(SHRI) X(SARI) X(SLTI) X(SLTIU) X(LUI) X(LB) X(LBU) X(LH) X(LHU) X(LW)  \
    X(LWU) X(LD) X(SB) X(SH) X(SW) X(SD)
#define P64_PAIRS_ROW_(A, X) P64_FUSE_SECOND(X, A)
#define P64_PAIRS(X) P64_FUSE_FIRST(P64_PAIRS_ROW_, X)

/* Handlers: one per row of the instruction table, plus the decoder's own. */
enum handler_id {
#define X(name, NAME, ...) H_##NAME,
    P64_INSNS(X)
#undef X
    H_INVALID, /* an invalid encoding: #UD (§3) */
    H_BFAR,    /* a compare-and-branch whose target is on another page */
    H_JFAR,    /* jmp to another page */
    H_ENTER,   /* fetch enters a page (§8.2): the sentinel and jump targets */
    H_PLAIN,   /* the handlers above are those of single instructions; below, of fused pairs */
#define X(A, B) H_##A##_##B,
    P64_PAIRS(X)
#undef X
    /* The translator's (translate.c, §15): never in hid[] or plain[], only in d[i].h. */
    H_HOT,     /* a translatable run's first word that counts its executions */
    H_JIT,     /* a word whose run is translated: the handler calls the code in xl */
    H_COUNT
};

/* ---- the host-side fast arrays in front of the modeled TLB (§15) ---- */
#define FAST_BITS 8
#define FAST_N (1u << FAST_BITS)
#define FAST_MASK (FAST_N - 1)
#define FAST_EMPTY 0x800ull /* bit 11: equals no masked address */

struct fast_entry {
    uint64_t tag;     /* linear page address */
    uintptr_t addend; /* host address = addend + linear address */
};

struct exec_entry {
    uint64_t tag;     /* linear page address */
    struct dinsn *dp; /* the decoded code of the page it maps to */
};

struct fast_set {
    struct fast_entry rd[FAST_N];
    struct fast_entry wr[FAST_N];
    struct exec_entry ex[FAST_N];
    /* ldgs/sdgs/jgs: the same translations, made without the segment limit (GS is a segment of its
     * own, §5.3), so that rd/wr never hold a page beyond MSR_SEGLIMIT and these never serve ld/st */
    struct fast_entry grd[FAST_N];
    struct fast_entry gwr[FAST_N];
};

/* fast_dirty: bit 4 * row + CPL for rd/wr/ex, FAST_DIRTY_GS << (4 * row + CPL) for grd/gwr. */
#define FAST_DIRTY_GS (1u << 8)

/* ---- the modeled TLB (§8.2) ---- */
#define PERM_W 1u
#define PERM_U 2u
#define PERM_NX 4u
#define PERM_NO_NW 8u   /* the nested translation forbids writes (docs/vmx.md V.6) */
#define PERM_NO_NX 16u  /* the nested translation forbids fetches */
#define PERM_ALL 31u

struct tlb_entry {
    uint64_t vpn;     /* linear page number of the 4 KiB piece */
    uint64_t pfn;     /* physical page number */
    uint64_t stamp;   /* insertion order, for FIFO replacement */
    uint32_t tag;     /* context tag (cpu.vm_tag at the fill) */
    uint8_t valid, level, perm, global, dirty;
    uint8_t fast;     /* CPLs whose fast arrays were given this translation (bit per CPL) */
    uint8_t pad[2];
};

struct tlb {
    struct tlb_entry *e;
    uint32_t entries, ways, sets, large; /* large: valid pieces of 2 MiB / 1 GiB pages */
    int is_data;
};

/* An event being delivered (§6.3). */
struct event {
    uint32_t vector, kind, has_error;
    uint64_t pc, error, address;
};

/* fault.vector of an access that failed with a VM exit pending (an EPT violation or
 * misconfiguration, docs/vmx.md V.6): not a vector of the guest's. */
#define VEC_VMEXIT 0x100u

struct fault {
    uint32_t vector;
    uint32_t has_error;
    uint64_t error;
    uint64_t address; /* #PF: the linear address (CR2) */
};

/* ---- vmx (docs/vmx.md) ---- */
#define GUEST_TAG_BASE 0x10000u /* TLB tags of guest mode: GUEST_TAG_BASE | VPID (V.7) */
#define EPT_R 1ull
#define EPT_W 2ull
#define EPT_X 4ull
#define PWC_ENTRIES 24
#define NTLB_ENTRIES 16

struct p64_vmcs {
    uint64_t f[P64_VMCS_FIELDS];
    uint64_t regs[17];
    struct p64_machine *owner;
    uint64_t seen_cr0, seen_cr3, seen_cr4, seen_eptp; /* guest state at the last exit */
    uint32_t launched, pad;
};

/* The VM exit being made (written to the VMCS when the run ends). */
struct vmx_exit {
    uint32_t reason, insn_len;
    uint64_t qual, linear, physical, intr_info, intr_error, vect_info, vect_error, insn_word;
};

/* A page-walk cache entry (V.6, pwc): an upper-level entry of one dimension. */
struct pwc_entry {
    uint64_t key;     /* the address bits that select the entry (address >> shift of its level) */
    uint64_t tag;     /* guest dimension: the TLB tag; nested: the EPT pointer */
    uint64_t value;   /* the entry */
    uint8_t valid, dim, level, perm; /* perm: W, U, NX (guest, combined down to here) or R, W, X */
    uint32_t pad;
};

struct ntlb_entry {
    uint64_t gpn, hpn, eptp;
    uint32_t valid, perm; /* combined R, W, X */
};

/* State that lives across runs and belongs in snapshots: the nested caches and the IOMMU. */
struct vmx_persist {
    struct pwc_entry pwc[PWC_ENTRIES];
    struct ntlb_entry ntlb[NTLB_ENTRIES];
    uint32_t pwc_next, ntlb_next;            /* FIFO: the next entry to replace */
    uint64_t iommu_root[P64_IOMMU_DEVICES]; /* EPT-pointer format */
    uint32_t iommu_attached;                /* bit per device */
    struct p64_iommu_fault faults[P64_IOMMU_FAULT_LOG];
    uint32_t nfaults, pad;
};

/* Guest mode: what one p64_vmrun needs (valid while m->guest). */
struct vmx_state {
    struct p64_vmcs *v;
    uint64_t pin, proc;
    int ept, tpr_shadow, intr_exiting, window_exiting;
    unsigned ept_levels;
    uint64_t ept_root, eptp;
    uint32_t fast_owner;         /* the guest tag the guest fast set holds (0: none) */
    struct p64_cpu host;         /* the host's state, saved at entry */
    struct vmx_exit x;
    struct event vectoring;      /* the event whose delivery failed (V.5 IDT-vectoring) */
    int vectoring_valid;
    int shadow_held;             /* the boundary consumed an sti shadow and nothing retired since */
};

struct p64_machine {
    struct p64_cpu cpu;
    struct p64_exit exit;
    struct p64_counters ctr;
    uint64_t clock;           /* ticks since reset, halted ticks included (§9) */
    uint8_t *mem;
    uint64_t mem_size, mem_pages;
    struct p64_config config;
    struct tlb dtlb, itlb;
    uint64_t tlb_stamp;
    struct fast_set *fast;   /* the current row of fast_sets: by CPL (the limit of §5.3 and U/S differ) */
    struct fast_set fast_sets[2][4]; /* host, guest (V.7) */
    uint32_t fast_dirty;     /* bit 4 * row + CPL: the set may hold entries (FAST_DIRTY_GS: its GS arrays) */
    uint64_t fast_limit[2];  /* by row: the segment limit its CPL 1..3 sets were filled under */
    uint64_t fast_cslimit[2]; /* by row: the fetch limit (fetch_limit) they were filled under */
    uint8_t fast_flat[2];    /* by row: filled without translation (identity entries, §5.3) */
    struct dpage **dpages;   /* by physical page number; NULL when not decoded */
    uint64_t *dlist;         /* physical page numbers of the decoded pages */
    uint32_t ndecoded;
    struct dpage *free_pages;
    const void *const *labels; /* the interpreter's handler addresses, by enum handler_id */
    struct dinsn stub;         /* the one-entry page every jump lands on: it enters the target */
    struct dinsn *scratch;     /* DPAGE_WORDS + 1 records: the end of a run cut short by the budget */
    struct dinsn *scratch_of;  /* the decoded page whose records the scratch holds */
    uint64_t fetch_va;         /* the page fetch is on, kept between blocks of one run */
    struct dinsn *fetch_dp;
    int fetch_valid;
    struct fault fault;
    uint64_t block_ticks;      /* the last block: ticks it ran */
    int64_t block_n0;          /* its budget */
    uint64_t block_step;       /* TF when it started (§6.4) */
    uint64_t block_ihits;      /* ITLB hits through the exec fast array */
    int block_paging;          /* CR0.PG when it started */
    uint64_t seen_cr0, seen_cr3, seen_cr4; /* to notice host writes (§10) */
    uint32_t seen_vm_tag;
    int guest;                 /* inside p64_vmrun (docs/vmx.md V.1) */
    int open;                  /* a run paused between two slices, its budget not spent (§10) */
    uint64_t open_left;        /* the budget it has left */
    struct p64_cpu open_cpu;   /* the CPU as it paused: p64_resume refuses a host write since */
    uint64_t pause_decodes;    /* a block ends early once pages_decoded passes this (a slice's work) */
    int translating;           /* CR0.PG, or guest mode with ept: accesses go through the TLB */
    struct jit *jit;           /* the block translator (translate.c); NULL when off */
    struct vmx_state vmx;
    struct vmx_persist nested;
    char error[256];
};

/* machine.c */
int p64_error(struct p64_machine *m, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int check_state(struct p64_machine *m);
void cpu_reset(struct p64_machine *m);

/* mmu.c: §5.3 accesses, §7 walks, §8 the TLB */
int load_slow(struct p64_machine *m, uint64_t va, unsigned size, unsigned cpl, uint64_t *out);
int store_slow(struct p64_machine *m, uint64_t va, unsigned size, unsigned cpl, uint64_t value);
int gs_load_slow(struct p64_machine *m, uint64_t va, unsigned cpl, uint64_t *out);
int gs_store_slow(struct p64_machine *m, uint64_t va, unsigned cpl, uint64_t value);
struct dinsn *fetch_page(struct p64_machine *m, uint64_t va, unsigned cpl);
void tlb_flush_nonglobal(struct p64_machine *m);
void tlb_flush_all(struct p64_machine *m);
void tlb_invlpg(struct p64_machine *m, uint64_t va);
void tlb_clear(struct p64_machine *m);
int tlb_init(struct tlb *t, uint32_t entries, uint32_t ways, int is_data);
void fast_clear_all(struct p64_machine *m);
void fast_sync(struct p64_machine *m);
void fast_forget_code_page(struct p64_machine *m, uint64_t ppn);
void fast_forget_dpage(struct p64_machine *m, const struct dinsn *dp);
void phys_write(struct p64_machine *m, uint64_t pa, unsigned size, uint64_t value);
void tlb_flush_tag(struct p64_machine *m, uint32_t tag, int all_guest);
void fast_enter_set(struct p64_machine *m, int guest);
void pwc_flush(struct p64_machine *m, int dim, int by_tag, uint64_t tag);
int nested_walk(struct p64_machine *m, uint64_t root_ptr, uint64_t gpa, unsigned need, uint64_t *hpa,
                unsigned *perm, uint64_t *refs);

/* decode.c: the predecoded page cache */
unsigned decode_word(struct dinsn *d, uint32_t word, unsigned idx, const void *const *labels);
struct dinsn *dcache_page(struct p64_machine *m, uint64_t ppn);
void dcache_store(struct p64_machine *m, uint64_t pa, unsigned size);
void dcache_drop_range(struct p64_machine *m, uint64_t pa, uint64_t len);
void dcache_clear(struct p64_machine *m);
void dcache_free(struct p64_machine *m);
int straight_handler(unsigned h);

/* translate.c: the block translator (§15) */
struct jit_io {
    int64_t n;     /* in: the budget before the first word's run is charged; out: before the exit word's */
    uint64_t hits; /* data fast-array hits (run.c LOAD, STORE) */
};
/* A translation: runs from its first word and returns the record the interpreter goes on at,
 * with bit 0 set when that record must run by its own handler (hid) rather than d.h. */
typedef uintptr_t (*jit_code)(uint64_t *r, struct fast_set *fs, struct jit_io *io);
#define JIT_ORIGINAL ((uintptr_t)1)
/* struct dpage.idle: entries in a row of a translation that gave its first word back at once;
 * at JIT_IDLE the word is retired (jit_retire) */
#define JIT_IDLE 16u
struct jit *jit_create(void);
void jit_destroy(struct jit *j);
void jit_mark(struct p64_machine *m, struct dinsn *dp, struct dinsn *ip);
int jit_hot(struct p64_machine *m, struct dpage *p, unsigned i);
void jit_drop_page(struct p64_machine *m, struct dpage *p);
void jit_retire(struct p64_machine *m, struct dpage *p, unsigned i);

/* events.c: §6 delivery */
enum { DELIVER_OK = 0, DELIVER_EXIT = 1, DELIVER_FAULT = 2 };
int deliver_event(struct p64_machine *m, const struct event *ev);
void set_fault(struct p64_machine *m, uint32_t vector, uint32_t has_error, uint64_t error, uint64_t address);
int deliver_fault(struct p64_machine *m, uint64_t pc);
int deliver_single_step(struct p64_machine *m);
int deliver_external(struct p64_machine *m);
int deliver_software(struct p64_machine *m, unsigned vector, uint64_t next_pc);
int interrupt_deliverable(const struct p64_cpu *c);

/* system.c: privilege, control registers, MSRs, FLAGS */
unsigned privilege_fault(const struct p64_machine *m, unsigned opcode);
int write_cr(struct p64_machine *m, unsigned crn, uint64_t value);
uint64_t read_cr(const struct p64_machine *m, unsigned crn);
int read_msr(struct p64_machine *m, uint64_t index, uint64_t now, uint64_t *out);
int write_msr(struct p64_machine *m, uint64_t index, uint64_t value, uint64_t now);
uint64_t flags_after_pop(const struct p64_cpu *c, uint64_t popped);
const char *cr_write_error(unsigned crn, uint64_t value);

/* run.c */
#define NO_SLICE UINT64_MAX /* run_loop's slice of a run that never pauses (p64_run, p64_vmrun) */
const void *const *handler_table(void);
uint64_t run_loop(struct p64_machine *m, uint64_t budget, uint64_t slice);
int end_call(struct p64_machine *m, uint64_t left);
int refuse_open(struct p64_machine *m, const char *what);
uint64_t run_budget(const struct p64_machine *m, uint64_t budget);
void begin_run(struct p64_machine *m);
void end_run(struct p64_machine *m);

/* vmx.c: guest mode (docs/vmx.md) */
enum { CR_ACCESS_MTCR = 0, CR_ACCESS_MFCR = 1 };
int vmx_exit(struct p64_machine *m, uint32_t reason, uint64_t qual);
void vmx_leave(struct p64_machine *m, const struct p64_cpu *written_after);
int vmx_exit_pending(struct p64_machine *m);
int vmx_exception_exits(const struct p64_machine *m, const struct event *ev);
int vmx_exception_exit(struct p64_machine *m, const struct event *ev);
int vmx_boundary(struct p64_machine *m);
int vmx_io_exits(const struct p64_machine *m, uint64_t port);
int vmx_msr_exits(const struct p64_machine *m, uint64_t index, int write);
uint64_t vmx_read_cr(const struct p64_machine *m, unsigned crn);
int vmx_ept_fault(struct p64_machine *m, uint32_t reason, uint64_t qual, uint64_t gpa, uint64_t va, int va_valid);
void vmx_pwc_insert(struct p64_machine *m, int dim, unsigned level, uint64_t key, uint64_t tag, uint64_t value,
                    unsigned perm);
const char *ept_root_error(const struct p64_machine *m, uint64_t ptr);
const struct pwc_entry *vmx_pwc_find(const struct p64_machine *m, int dim, unsigned level, uint64_t key, uint64_t tag);

static inline uint64_t bit(unsigned n) { return 1ull << n; }
static inline void update_translating(struct p64_machine *m)
{
    m->translating = (m->cpu.cr0 & CR0_PG) || (m->guest && m->vmx.ept);
}
static inline int proc(const struct p64_machine *m, unsigned b) { return (m->vmx.proc >> b) & 1; }

static inline int has_feature(const struct p64_machine *m, uint32_t f)
{
    return (m->config.features & f) != 0;
}

/* §5.3 step 2: is the segment limit in force at this CPL? */
static inline int limited(const struct p64_machine *m, unsigned cpl)
{
    return cpl > 0 && has_feature(m, P64_F_SEGLIMIT);
}

/* The last byte of [va, va + size) beyond MSR_SEGLIMIT | 0xfff, without overflow. */
static inline int beyond_limit(const struct p64_machine *m, uint64_t va, uint64_t size)
{
    return va > (m->cpu.seglimit | PAGE_OFFSET) - (size - 1);
}

/* The limit that bounds fetch (§5.3 step 2): MSR_CSLIMIT, or in guest mode, which holds no
 * code limit of its own (docs/vmx.md V.2), MSR_SEGLIMIT as before the code limit existed. */
static inline uint64_t fetch_limit(const struct p64_machine *m)
{
    return m->guest ? m->cpu.seglimit : m->cpu.cslimit;
}

/* The last byte of a 4-byte fetch at va beyond the fetch limit | 0xfff. */
static inline int fetch_beyond_limit(const struct p64_machine *m, uint64_t va)
{
    return va > (fetch_limit(m) | PAGE_OFFSET) - 3;
}

/* §5.4, the host segment: do the 8 bytes at offset lie beyond MSR_GSLIMIT (byte-granular; a
 * limit below 7 holds no access at all)? */
static inline int gs_beyond_limit(const struct p64_machine *m, uint64_t offset)
{
    return m->cpu.gslimit < GS_SIZE - 1 || offset > m->cpu.gslimit - (GS_SIZE - 1);
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#endif
