/* The boundary of the P64 core: every type and function Python sees (fed to ffibuilder.cdef
 * unchanged, so no preprocessor lines may appear below; see docs/architecture.md §10). */

/* Status codes of every function that returns int. */
enum {
    P64_OK = 0,
    P64_ERR_NOMEM = 1,      /* allocation failed */
    P64_ERR_CONFIG = 2,     /* invalid configuration (p64_last_error says which field) */
    P64_ERR_STATE = 3,      /* host-written CPU state is impossible (p64_last_error names it) */
    P64_ERR_RANGE = 4,      /* physical address range outside RAM */
    P64_ERR_SNAPSHOT = 5    /* snapshot buffer of the wrong size or machine shape */
};

/* Exit reasons of p64_run (docs/architecture.md §10). */
enum {
    P64_EXIT_BUDGET = 0,
    P64_EXIT_HOST_GATE = 1,
    P64_EXIT_IO_IN = 2,
    P64_EXIT_IO_OUT = 3,
    P64_EXIT_HLT = 4,
    P64_EXIT_HCALL = 5,
    P64_EXIT_SHUTDOWN = 6
};

/* Event classes (docs/architecture.md §6.1). */
enum {
    P64_EVENT_FAULT = 0,
    P64_EVENT_TRAP = 1,
    P64_EVENT_SOFTWARE = 2,
    P64_EVENT_EXTERNAL = 3,
    P64_EVENT_ABORT = 4
};

/* Feature bits of p64_config.features (docs/architecture.md §12). */
enum {
    P64_F_CLASSIC = 1,
    P64_F_SEGLIMIT = 2,
    P64_F_VMX = 4,
    P64_F_EPT = 8,
    P64_F_VPID = 16,
    P64_F_TPR_SHADOW = 32,
    P64_F_IOMMU = 64,
    P64_F_PWC = 128
};

/* Access kinds for p64_walk. */
enum {
    P64_ACCESS_READ = 0,
    P64_ACCESS_WRITE = 1,
    P64_ACCESS_FETCH = 2
};

struct p64_config {
    uint64_t mem_size;      /* bytes of RAM: a multiple of 4096, 64 KiB .. 4 GiB */
    uint32_t features;      /* P64_F_* */
    uint32_t dtlb_entries;  /* power of two, 4 .. 4096 */
    uint32_t dtlb_ways;     /* power of two dividing dtlb_entries */
    uint32_t itlb_entries;
    uint32_t itlb_ways;
};

/* Architectural CPU state (docs/architecture.md §2), read and written by the host between
 * runs.  r[16] is not a register: writes to r0 land there so that instruction bodies never
 * test for r0; the core clears r[0] on entry. */
struct p64_cpu {
    uint64_t r[17];
    uint64_t pc;
    uint64_t flags;
    uint64_t cpl;
    uint64_t cr0;
    uint64_t cr2;
    uint64_t cr3;
    uint64_t cr4;
    uint64_t cr8;
    uint64_t idtr;
    uint64_t rsp[3];        /* MSR_RSP0..2 */
    uint64_t seglimit;      /* MSR_SEGLIMIT */
    uint64_t tsc_offset;    /* TSC = clock + tsc_offset */
    uint32_t halted;        /* 1 after hlt until an interrupt is delivered */
    uint32_t int_shadow;    /* 1: the next boundary takes no interrupt (after sti) */
    int32_t intr_vector;    /* pending external vector presented by the host, -1 none */
    int32_t intr_acked;     /* vector the core delivered since the host cleared it, -1 none */
    uint32_t shutdown;      /* 1 after a triple fault */
    uint32_t pending_db;    /* 1: a single-step #DB waits for the next boundary */
    uint32_t vm_tag;        /* TLB context tag (0: host) */
    uint32_t reserved;
};

/* What the last p64_run ended with (docs/architecture.md §10). */
struct p64_exit {
    uint32_t reason;        /* P64_EXIT_* */
    uint32_t vector;        /* host gate: the vector */
    uint32_t kind;          /* host gate: P64_EVENT_* */
    uint32_t has_error;     /* host gate: 1 if error_code is meaningful */
    uint64_t error_code;
    uint64_t address;       /* host gate #PF: the faulting linear address (also in CR2) */
    uint64_t port;          /* in/out */
    uint64_t value;         /* out: the value written */
    uint32_t reg;           /* in: the register the host fills */
    uint32_t reserved;
    uint64_t number;        /* hcall/vmcall: the immediate */
    uint64_t qualification; /* reserved for VM exits */
    uint64_t guest_physical;/* reserved for VM exits */
};

/* Counters (docs/architecture.md §13).  Plain integers; the cost model prices them. */
struct p64_counters {
    uint64_t ticks;
    uint64_t halted_ticks;
    uint64_t insn[2][4];        /* retired instructions by mode (0 host, 1 guest) and CPL */
    uint64_t exceptions[256];   /* exceptions and software interrupts delivered, by vector */
    uint64_t interrupts[256];   /* external interrupts delivered, by vector */
    uint64_t double_faults;
    uint64_t triple_faults;
    uint64_t host_gate_exits;
    uint64_t hcalls;
    uint64_t vmcalls;
    uint64_t port_reads;
    uint64_t port_writes;
    uint64_t itlb_hits;
    uint64_t itlb_misses;
    uint64_t dtlb_hits;
    uint64_t dtlb_misses;
    uint64_t tlb_flushes;       /* non-global flushes (CR3 writes) */
    uint64_t tlb_full_flushes;  /* everything, global entries too */
    uint64_t invlpgs;
    uint64_t walks;
    uint64_t walk_refs;         /* memory references made by page walks */
    uint64_t ad_updates;        /* A/D bit writes by the walker */
    uint64_t pages_decoded;     /* not architectural */
    uint64_t code_invalidations;/* not architectural */
};

/* Result of p64_walk: a translation made without touching the TLB. */
struct p64_walk {
    uint64_t physical;      /* the translated physical address (when fault == 0) */
    uint64_t error_code;    /* #PF error code when fault == 14 */
    uint32_t fault;         /* 0, or the vector the access would raise (13, 14, 17, 18) */
    uint32_t levels;        /* entries read */
    uint32_t page_level;    /* 1: 4 KiB, 2: 2 MiB, 3: 1 GiB; 0 with paging off */
    uint32_t writable;      /* combined permissions of the translation */
    uint32_t user;
    uint32_t nx;
    uint64_t entry_addr[4]; /* physical addresses of the entries read, top level first */
    uint64_t entry[4];      /* their values */
};

struct p64_machine;

int p64_create(const struct p64_config *config, struct p64_machine **out);
void p64_destroy(struct p64_machine *m);
const char *p64_last_error(struct p64_machine *m);
const char *p64_isa_hash(void);
uint32_t p64_abi_version(void);

struct p64_cpu *p64_cpu(struct p64_machine *m);
struct p64_exit *p64_exit_info(struct p64_machine *m);
struct p64_counters *p64_counters(struct p64_machine *m);
uint8_t *p64_memory(struct p64_machine *m);
uint64_t p64_memory_size(struct p64_machine *m);
uint64_t p64_clock(struct p64_machine *m);

int p64_run(struct p64_machine *m, uint64_t budget);
int p64_advance_clock(struct p64_machine *m, uint64_t ticks);
int p64_write_phys(struct p64_machine *m, uint64_t addr, const uint8_t *data, uint64_t len);
int p64_read_phys(struct p64_machine *m, uint64_t addr, uint8_t *out, uint64_t len);
int p64_code_written(struct p64_machine *m, uint64_t addr, uint64_t len);
int p64_walk(struct p64_machine *m, uint64_t va, uint32_t access, uint32_t cpl, uint32_t set_ad,
             struct p64_walk *out);
int p64_tlb_flush(struct p64_machine *m);
int p64_reset(struct p64_machine *m);

uint64_t p64_snapshot_size(struct p64_machine *m);
int p64_snapshot(struct p64_machine *m, uint8_t *buf, uint64_t len);
int p64_restore(struct p64_machine *m, const uint8_t *buf, uint64_t len);
