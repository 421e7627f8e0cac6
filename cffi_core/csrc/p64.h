/* The boundary of the P64 core: every type and function Python sees (fed to ffibuilder.cdef
 * unchanged, so no preprocessor lines may appear below; see docs/architecture.md §10). */

/* Status codes of every function that returns int. */
enum {
    P64_OK = 0,
    P64_ERR_NOMEM = 1,      /* allocation failed */
    P64_ERR_CONFIG = 2,     /* invalid configuration (p64_last_error says which field) */
    P64_ERR_STATE = 3,      /* host-written CPU state is impossible (p64_last_error names it) */
    P64_ERR_RANGE = 4,      /* physical range outside RAM, or a clock past 2^64 - 1 */
    P64_ERR_SNAPSHOT = 5,   /* snapshot buffer of the wrong size or machine shape */
    P64_ERR_VMX = 6         /* vmx refused: no feature, invalid VMCS contents (p64_last_error names the field) */
};

/* Exit reasons of p64_run (docs/architecture.md §10). */
enum {
    P64_EXIT_BUDGET = 0,
    P64_EXIT_HOST_GATE = 1,
    P64_EXIT_IO_IN = 2,
    P64_EXIT_IO_OUT = 3,
    P64_EXIT_HLT = 4,
    P64_EXIT_HCALL = 5,
    P64_EXIT_SHUTDOWN = 6,
    P64_EXIT_VM = 7,        /* p64_vmrun only: a VM exit; exit.number is the VM exit reason (docs/vmx.md V.4) */
    P64_EXIT_PAUSED = 8     /* a sliced run paused, still open: p64_resume or p64_close it (§10) */
};

/* VM exit reasons (docs/vmx.md V.4): VT-x's numbers. */
enum {
    P64_VMEXIT_EXCEPTION = 0,
    P64_VMEXIT_EXTERNAL_INTERRUPT = 1,
    P64_VMEXIT_TRIPLE_FAULT = 2,
    P64_VMEXIT_INTERRUPT_WINDOW = 7,
    P64_VMEXIT_HLT = 12,
    P64_VMEXIT_INVLPG = 14,
    P64_VMEXIT_RDTSC = 16,
    P64_VMEXIT_VMCALL = 18,
    P64_VMEXIT_CR_ACCESS = 28,
    P64_VMEXIT_IO_INSTRUCTION = 30,
    P64_VMEXIT_RDMSR = 31,
    P64_VMEXIT_WRMSR = 32,
    P64_VMEXIT_TPR_BELOW_THRESHOLD = 43,
    P64_VMEXIT_DESCRIPTOR_TABLE = 46,
    P64_VMEXIT_EPT_VIOLATION = 48,
    P64_VMEXIT_EPT_MISCONFIG = 49,
    P64_VMEXIT_REASONS = 64     /* size of counters.vm_exits */
};

/* VMCS fields (docs/vmx.md V.2), read and written with p64_vmcs_read/p64_vmcs_write (counted).
 * The fields from P64_VMCS_EXIT_REASON on are exit information: read-only to the host. */
enum {
    P64_VMCS_GUEST_PC = 0,
    P64_VMCS_GUEST_FLAGS = 1,
    P64_VMCS_GUEST_CPL = 2,
    P64_VMCS_GUEST_CR0 = 3,
    P64_VMCS_GUEST_CR2 = 4,
    P64_VMCS_GUEST_CR3 = 5,
    P64_VMCS_GUEST_CR4 = 6,
    P64_VMCS_GUEST_CR8 = 7,
    P64_VMCS_GUEST_IDTR = 8,
    P64_VMCS_GUEST_RSP0 = 9,
    P64_VMCS_GUEST_RSP1 = 10,
    P64_VMCS_GUEST_RSP2 = 11,
    P64_VMCS_GUEST_SEGLIMIT = 12,
    P64_VMCS_GUEST_INTERRUPTIBILITY = 13,
    P64_VMCS_GUEST_ACTIVITY = 14,
    P64_VMCS_GUEST_PENDING_DB = 15,
    P64_VMCS_PIN_CONTROLS = 16,
    P64_VMCS_PROC_CONTROLS = 17,
    P64_VMCS_EXCEPTION_BITMAP = 18,
    P64_VMCS_PF_ERROR_CODE_MASK = 19,
    P64_VMCS_PF_ERROR_CODE_MATCH = 20,
    P64_VMCS_CR0_GUEST_HOST_MASK = 21,
    P64_VMCS_CR0_READ_SHADOW = 22,
    P64_VMCS_CR4_GUEST_HOST_MASK = 23,
    P64_VMCS_CR4_READ_SHADOW = 24,
    P64_VMCS_IO_BITMAP = 25,
    P64_VMCS_MSR_BITMAP = 26,
    P64_VMCS_TSC_OFFSET = 27,
    P64_VMCS_VIRTUAL_TPR = 28,
    P64_VMCS_TPR_THRESHOLD = 29,
    P64_VMCS_EPT_POINTER = 30,
    P64_VMCS_VPID = 31,
    P64_VMCS_ENTRY_INTR_INFO = 32,
    P64_VMCS_ENTRY_ERROR_CODE = 33,
    P64_VMCS_EXIT_REASON = 34,
    P64_VMCS_EXIT_QUALIFICATION = 35,
    P64_VMCS_GUEST_LINEAR_ADDRESS = 36,
    P64_VMCS_GUEST_PHYSICAL_ADDRESS = 37,
    P64_VMCS_EXIT_INTR_INFO = 38,
    P64_VMCS_EXIT_INTR_ERROR_CODE = 39,
    P64_VMCS_IDT_VECTORING_INFO = 40,
    P64_VMCS_IDT_VECTORING_ERROR_CODE = 41,
    P64_VMCS_EXIT_INSTRUCTION_LENGTH = 42,
    P64_VMCS_EXIT_INSTRUCTION_WORD = 43,
    P64_VMCS_FIELDS = 44
};

/* PIN_CONTROLS and PROC_CONTROLS: bit numbers (docs/vmx.md V.2; VT-x's, the secondary
 * controls from bit 32). */
enum {
    P64_PIN_EXTERNAL_INTERRUPT_EXITING = 0
};
enum {
    P64_PROC_INTERRUPT_WINDOW_EXITING = 2,
    P64_PROC_USE_TSC_OFFSET = 3,
    P64_PROC_HLT_EXITING = 7,
    P64_PROC_INVLPG_EXITING = 9,
    P64_PROC_RDTSC_EXITING = 12,
    P64_PROC_CR3_LOAD_EXITING = 15,
    P64_PROC_CR3_STORE_EXITING = 16,
    P64_PROC_CR8_LOAD_EXITING = 19,
    P64_PROC_CR8_STORE_EXITING = 20,
    P64_PROC_USE_TPR_SHADOW = 21,
    P64_PROC_UNCONDITIONAL_IO_EXITING = 24,
    P64_PROC_USE_IO_BITMAPS = 25,
    P64_PROC_DESCRIPTOR_TABLE_EXITING = 26,
    P64_PROC_USE_MSR_BITMAPS = 28,
    P64_PROC_ENABLE_EPT = 33,
    P64_PROC_ENABLE_VPID = 37
};

/* Event information fields: ENTRY_INTR_INFO, EXIT_INTR_INFO, IDT_VECTORING_INFO (docs/vmx.md
 * V.5): bits 7:0 the vector, 10:8 the type, bit 11 error code valid, bit 31 valid. */
enum {
    P64_INTR_TYPE_EXTERNAL = 0,
    P64_INTR_TYPE_HARDWARE_EXCEPTION = 3,
    P64_INTR_TYPE_SOFTWARE_INTERRUPT = 4,
    P64_INTR_TYPE_SHIFT = 8,
    P64_INTR_ERROR_CODE_BIT = 11,
    P64_INTR_VALID_BIT = 31
};

/* The IOMMU (docs/vmx.md V.10). */
enum {
    P64_IOMMU_DEVICES = 16,     /* device ids 0..15 */
    P64_IOMMU_FAULT_LOG = 64    /* faults kept until the host takes them */
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
    uint32_t mem_shared;    /* 1: RAM is a shared anonymous mapping, so that a process forked
                             * after p64_create sees the same RAM (docs/vmm-api.md §11) */
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
    uint64_t seglimit;      /* MSR_SEGLIMIT: bounds data at CPL >= 1 (and fetch in guest mode) */
    uint64_t cslimit;       /* MSR_CSLIMIT: bounds fetch at CPL >= 1 outside guest mode */
    uint64_t gsbase;        /* MSR_GSBASE: the host segment's base (ldgs/sdgs/jgs; host state, not guest mode's) */
    uint64_t gslimit;       /* MSR_GSLIMIT: the offset of its last byte; 0 refuses every access */
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
    /* vmx (docs/vmx.md V.11) */
    uint64_t vm_entries;
    uint64_t vm_exits[64];      /* by VM exit reason */
    uint64_t vmcs_reads;
    uint64_t vmcs_writes;
    uint64_t vm_transition_flushes; /* whole-TLB flushes made by VM entries and exits (no vpid) */
    uint64_t walks_2d;          /* page walks of guest mode with ept */
    uint64_t walk_refs_2d;      /* their memory references, guest and nested */
    uint64_t pwc_hits;          /* page-walk cache lookups that hit (pwc) */
    uint64_t ntlb_hits;         /* nested TLB lookups that hit (pwc) */
    uint64_t ntlb_misses;
    uint64_t iommu_translations;/* DMA pages translated */
    uint64_t iommu_faults;      /* DMAs refused */
    uint64_t cr_writes;         /* control registers written by a retired mtcr (any mode) */
    uint64_t insn_system[32];   /* retired system-group instructions by opcode - P64_OP_SYSTEM_FIRST */
};

/* One refused DMA (docs/vmx.md V.10). */
struct p64_iommu_fault {
    uint32_t device;
    uint32_t write;         /* 1: the device wrote memory; 0: it read */
    uint64_t address;       /* the device address (guest-physical) that failed */
    uint32_t reason;        /* 0 not mapped, 1 not permitted, 2 misconfigured entry */
    uint32_t reserved;
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

/* A run in slices (docs/architecture.md §10): p64_run_slice and p64_vmrun_slice start a run of
 * `budget` ticks as p64_run and p64_vmrun do, and p64_resume goes on with it, each call
 * returning after at most `slice` ticks (fewer when the guest's ticks are costly: decoding
 * pages, flushing TLBs).  A run that has not ended by then exits with P64_EXIT_PAUSED and stays
 * open; resuming it goes on exactly where it stopped, so a run in slices ends exactly as one
 * call would.  p64_close ends an open run with the budget exit it would have made had its budget
 * run out at that tick (nothing open: nothing done).  While a run is open the core refuses
 * (P64_ERR_STATE) every call but p64_resume, p64_close, p64_destroy and the reads that change
 * nothing (the accessors, p64_read_phys, p64_snapshot_size, p64_iommu_take_faults,
 * p64_vmcs_create, p64_last_error); p64_resume refuses a CPU written while the run was open, which p64_close keeps.
 * The VMCS of an open vmrun must not be destroyed. */
int p64_run_slice(struct p64_machine *m, uint64_t budget, uint64_t slice);
int p64_resume(struct p64_machine *m, uint64_t slice);
int p64_close(struct p64_machine *m);
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

/* vmx (docs/vmx.md): a VMCS belongs to the machine that created it. */
struct p64_vmcs;
int p64_vmcs_create(struct p64_machine *m, struct p64_vmcs **out);
void p64_vmcs_destroy(struct p64_vmcs *v);
uint64_t *p64_vmcs_regs(struct p64_vmcs *v);   /* the guest's r0..r15 (+ the sink): not counted */
int p64_vmcs_read(struct p64_machine *m, struct p64_vmcs *v, uint32_t field, uint64_t *out);
int p64_vmcs_write(struct p64_machine *m, struct p64_vmcs *v, uint32_t field, uint64_t value);
/* n fields at once, each as one p64_vmcs_read/p64_vmcs_write (checked, counted); stops at the first refused. */
int p64_vmcs_read_many(struct p64_machine *m, struct p64_vmcs *v, const uint32_t *fields, uint64_t *out, uint32_t n);
int p64_vmcs_write_many(struct p64_machine *m, struct p64_vmcs *v, const uint32_t *fields, const uint64_t *values,
                        uint32_t n);
int p64_vmcs_copy(struct p64_machine *m, struct p64_vmcs *dst, const struct p64_vmcs *src);
int p64_vmrun(struct p64_machine *m, struct p64_vmcs *v, uint64_t budget);
int p64_vmrun_slice(struct p64_machine *m, struct p64_vmcs *v, uint64_t budget, uint64_t slice); /* see p64_run_slice */
int p64_invept(struct p64_machine *m);
int p64_invvpid(struct p64_machine *m, uint32_t vpid);

/* iommu (docs/vmx.md V.10) */
int p64_iommu_attach(struct p64_machine *m, uint32_t device, uint64_t root);
int p64_iommu_detach(struct p64_machine *m, uint32_t device);
int p64_dma(struct p64_machine *m, uint32_t device, uint64_t addr, uint8_t *buf, uint64_t len, uint32_t write,
            uint32_t *refused);
uint32_t p64_iommu_take_faults(struct p64_machine *m, struct p64_iommu_fault *out, uint32_t max);
