/* Private to the core: struct p64_machine, the decoded-instruction format, constants of the
 * manual and the functions the core's files share (docs/architecture.md). */
#ifndef P64_CORE_H
#define P64_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p64.h"
#include "isa.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the P64 core assumes a little-endian host (guest memory is little-endian, §3)"
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NOINLINE __attribute__((noinline))
#define COLD __attribute__((cold, noinline))

#define P64_ABI_VERSION 1u

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

/* One predecoded word: 16 bytes, the handler's address first.  Register fields are indices
 * into cpu.r (a write to r0 is redirected to r[16]); imm is the immediate as the body uses
 * it (for in-page branches: the offset in words). */
struct dinsn {
    const void *h;
    int32_t imm;
    uint8_t rd, rs1, rs2, aux;
};

#define DPAGE_WORDS 1024
#define DPAGE_MAX 1024 /* decoded pages kept at once; more flushes the whole cache */

struct dpage {
    struct dinsn d[DPAGE_WORDS + 1]; /* + the sentinel that enters the next page */
    struct dpage *next;              /* free list */
    uint64_t ppn;
    uint32_t slot;                   /* index in machine.dlist */
};

/* Handlers: one per row of the instruction table, plus the decoder's own. */
enum handler_id {
#define X(name, NAME, ...) H_##NAME,
    P64_INSNS(X)
#undef X
    H_INVALID, /* an invalid encoding: #UD (§3) */
    H_BFAR,    /* a compare-and-branch whose target is on another page */
    H_JFAR,    /* jmp to another page */
    H_ENTER,   /* fetch enters a page (§8.2): the sentinel and jump targets */
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
};

/* ---- the modeled TLB (§8.2) ---- */
#define PERM_W 1u
#define PERM_U 2u
#define PERM_NX 4u

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

struct fault {
    uint32_t vector;
    uint32_t has_error;
    uint64_t error;
    uint64_t address; /* #PF: the linear address (CR2) */
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
    struct fast_set fast[4]; /* by CPL: the limit of §5.3 and U/S differ */
    struct dpage **dpages;   /* by physical page number; NULL when not decoded */
    uint64_t *dlist;         /* physical page numbers of the decoded pages */
    uint32_t ndecoded;
    struct dpage *free_pages;
    const void *const *labels; /* the interpreter's handler addresses, by enum handler_id */
    struct dinsn stub;         /* the one-entry page every jump lands on: it enters the target */
    uint64_t fetch_va;         /* the page fetch is on, kept between blocks of one run */
    struct dinsn *fetch_dp;
    int fetch_valid;
    struct fault fault;
    uint64_t block_ticks;      /* the last block: ticks it ran */
    int64_t block_n0;          /* its budget */
    uint64_t block_step;       /* TF when it started (§6.4) */
    uint64_t block_ihits;      /* ITLB hits through the exec fast array */
    int block_paging;          /* CR0.PG when it started */
    uint64_t seen_cr0, seen_cr3, seen_cr4, seen_seglimit; /* to notice host writes (§10) */
    uint32_t seen_vm_tag;
    char error[256];
};

/* machine.c */
int p64_error(struct p64_machine *m, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int check_state(struct p64_machine *m);
void cpu_reset(struct p64_machine *m);

/* mmu.c: §5.3 accesses, §7 walks, §8 the TLB */
int load_slow(struct p64_machine *m, uint64_t va, unsigned size, unsigned cpl, uint64_t *out);
int store_slow(struct p64_machine *m, uint64_t va, unsigned size, unsigned cpl, uint64_t value);
struct dinsn *fetch_page(struct p64_machine *m, uint64_t va, unsigned cpl);
void tlb_flush_nonglobal(struct p64_machine *m);
void tlb_flush_all(struct p64_machine *m);
void tlb_invlpg(struct p64_machine *m, uint64_t va);
void tlb_clear(struct p64_machine *m);
int tlb_init(struct tlb *t, uint32_t entries, uint32_t ways, int is_data);
void fast_clear_all(struct p64_machine *m);
void fast_clear_limited(struct p64_machine *m);
void fast_forget_code_page(struct p64_machine *m, uint64_t ppn);
void fast_forget_dpage(struct p64_machine *m, const struct dinsn *dp);
void phys_write(struct p64_machine *m, uint64_t pa, unsigned size, uint64_t value);

/* decode.c: the predecoded page cache */
void decode_word(struct dinsn *d, uint32_t word, unsigned idx, const void *const *labels);
struct dinsn *dcache_page(struct p64_machine *m, uint64_t ppn);
void dcache_store(struct p64_machine *m, uint64_t pa, unsigned size);
void dcache_drop_range(struct p64_machine *m, uint64_t pa, uint64_t len);
void dcache_clear(struct p64_machine *m);
void dcache_free(struct p64_machine *m);

/* events.c: §6 delivery */
enum { DELIVER_OK = 0, DELIVER_EXIT = 1, DELIVER_FAULT = 2 };
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
const void *const *handler_table(void);

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
