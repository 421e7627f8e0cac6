"""Python models of p64os's workloads: what each prints and writes, computed without the guest.

Every workload (user/<name>.s) is a deterministic function of its size ``n``; this module
states that function a second time, in Python, from the same definitions (the same LCG, the
same sort order, the same hash), so that a test compares the guest's console and disk with
values the guest did not produce.  The workloads follow Adams & Agesen (2006) §6: forkwait
(process creation), compute (near-native code), compile (many short processes doing file
I/O), an MMU stress and disk I/O.

Shared definitions, used by the assembly too:

- ``lcg_next``: Knuth's MMIX linear congruential generator, x' = a*x + c mod 2^64;
- ``mix``: one FNV-1a step on a quadword, c' = (c xor v) * FNV_PRIME mod 2^64, the
  checksum of a sequence of quadwords starting from ``FNV_OFFSET``;
- ``fnv1a``: 64-bit FNV-1a over bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COMPILE_JOBS",
    "FNV_OFFSET",
    "FNV_PRIME",
    "LCG_A",
    "LCG_C",
    "MMU_PAGES",
    "MMU_RANGE_PAGES",
    "SECTOR_SIZE",
    "WorkloadResult",
    "compile_model",
    "compile_object",
    "compile_sources",
    "compute_model",
    "diskio_model",
    "fnv1a",
    "forkwait_model",
    "lcg_next",
    "mix",
    "mmu_model",
]

MASK64 = (1 << 64) - 1
LCG_A = 6364136223846793005  # Knuth, MMIX
LCG_C = 1442695040888963407
FNV_OFFSET = 0xCBF29CE484222325  # FNV-1a, 64-bit
FNV_PRIME = 0x100000001B3
SECTOR_SIZE = 512  # docs/devices.md §6
PAGE_SIZE = 4096  # docs/architecture.md §7

COMPILE_JOBS = 2  # compile: children running at once
COMPILE_MAGIC = 0x4A424F50  # b"POBJ" as a little-endian u32: an object file's first word
MMU_PAGES = 512  # mmu: the working set W, 2 MiB: 8 times the 64-entry data TLB (§8.2)
MMU_RANGE_PAGES = 16  # mmu (b): the range mprotect toggles
MMU_TOUCH_OFFSET = 16  # mmu (c): the quadword of each page the fork rounds fill
MMU_COW_STRIDE = 4  # mmu (c): the child writes every 4th page (COW breaks)


@dataclass(frozen=True)
class WorkloadResult:
    """What a workload run must show: its console output, exit status and written files."""

    console: bytes
    status: int = 0
    files: dict[str, bytes] | None = None


def lcg_next(x: int) -> int:
    """The next state of the workloads' LCG (Knuth's MMIX constants), mod 2^64."""
    return (x * LCG_A + LCG_C) & MASK64


def mix(c: int, v: int) -> int:
    """One FNV-1a step on a quadword: the workloads' checksum of a sequence of values."""
    return ((c ^ v) * FNV_PRIME) & MASK64


def fnv1a(data: bytes, h: int = FNV_OFFSET) -> int:
    """64-bit FNV-1a of ``data``, continuing from ``h``."""
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def _hex(v: int) -> str:
    """A checksum as the workloads print it (ulib's ``puthex``: lower-case, no leading zeros)."""
    return f"{v & MASK64:x}"


# ---- forkwait ---------------------------------------------------------------------------


def forkwait_model(n: int) -> WorkloadResult:
    """forkwait n: n times fork + wait, each child exiting at once with status 0."""
    return WorkloadResult(f"forkwait n={n} ok={n}\n".encode())


# ---- compute ----------------------------------------------------------------------------


def compute_matrix_size(n: int) -> int:
    """compute's matrix order m: the largest m >= 1 with m^3 <= 16 n."""
    m = 1
    while (m + 1) ** 3 <= 16 * n:
        m += 1
    return m


def compute_model(n: int) -> WorkloadResult:
    """compute n: three integer kernels, each with a checksum.

    The LCG runs from x = n through all three: sort fills n quadwords (x after each step),
    sorts them ascending as unsigned numbers and mixes them in order; hash takes 8n bytes
    (the top byte of x after each step) and prints their FNV-1a; matmul fills A then B,
    m x m row-major, with the top 16 bits of x, multiplies them mod 2^64 and mixes C
    row-major.
    """
    x = n
    values = []
    for _ in range(n):
        x = lcg_next(x)
        values.append(x)
    c_sort = FNV_OFFSET
    for v in sorted(values):
        c_sort = mix(c_sort, v)
    buf = bytearray()
    for _ in range(8 * n):
        x = lcg_next(x)
        buf.append(x >> 56)
    c_hash = fnv1a(bytes(buf))
    m = compute_matrix_size(n)
    mats = []
    for _ in range(2):
        rows = []
        for _ in range(m):
            row = []
            for _ in range(m):
                x = lcg_next(x)
                row.append(x >> 48)
            rows.append(row)
        mats.append(rows)
    a, b = mats
    c_mat = FNV_OFFSET
    for i in range(m):
        for j in range(m):
            s = sum(a[i][k] * b[k][j] for k in range(m)) & MASK64
            c_mat = mix(c_mat, s)
    out = f"compute n={n}\nsort {_hex(c_sort)}\nfnv1a {_hex(c_hash)}\nmatmul {m}x{m} {_hex(c_mat)}\n"
    return WorkloadResult(out.encode())


# ---- compile ----------------------------------------------------------------------------

_KEYWORDS = ("let", "if", "then", "else", "while", "do", "end", "fn", "return")
_OPERATORS = ("+", "-", "*", "=", "==", "<", "(", ")", ";", ",")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _LETTERS + "0123456789_"


def source_name(i: int) -> str:
    """The name of compile's i-th source file (i < 1000)."""
    return f"src{i:03d}"


def object_name(i: int) -> str:
    """The name of the object file compiled from source i."""
    return f"obj{i:03d}"


def compile_source(i: int) -> bytes:
    """Source file i: lines of 3 to 12 tokens (keywords, identifiers, numbers, operators)
    separated by single spaces, about 600 to 2,100 bytes; deterministic in i."""
    x = 0x5EED0000 + i
    x = lcg_next(x)
    target = 600 + (x >> 33) % 1500
    out = bytearray()
    while len(out) < target:
        x = lcg_next(x)
        count = 3 + (x >> 33) % 10
        tokens = []
        for _ in range(count):
            x = lcg_next(x)
            kind = (x >> 33) % 4
            if kind == 0:
                x = lcg_next(x)
                tokens.append(_KEYWORDS[(x >> 33) % len(_KEYWORDS)])
            elif kind == 1:
                x = lcg_next(x)
                word = _LETTERS[(x >> 33) % 26]
                x = lcg_next(x)
                for _ in range((x >> 33) % 8):
                    x = lcg_next(x)
                    word += _ALNUM[(x >> 33) % len(_ALNUM)]
                tokens.append(word)
            elif kind == 2:
                x = lcg_next(x)
                tokens.append(str((x >> 33) % 100000))
            else:
                x = lcg_next(x)
                tokens.append(_OPERATORS[(x >> 33) % len(_OPERATORS)])
        out += " ".join(tokens).encode() + b"\n"
    return bytes(out)


def compile_sources(n: int) -> dict[str, bytes]:
    """compile's source files src000 .. src(n-1)."""
    return {source_name(i): compile_source(i) for i in range(n)}


def compile_object(source: bytes) -> bytes:
    """What the compile workload's child writes for ``source``.

    Tokens are maximal runs of bytes above 0x20 (space); the object is, as little-endian
    u32s: COMPILE_MAGIC, the token count, the line count (newline bytes), the count of
    tokens that start with a digit, then the low 32 bits of each token's FNV-1a in order,
    then the low 32 bits of the FNV-1a of the whole source.
    """
    hashes = []
    numbers = 0
    for token in source.replace(b"\n", b" ").replace(b"\t", b" ").split():
        if any(b <= 0x20 for b in token):  # split() also splits on \r, \v, \f: none occur
            raise ValueError("source bytes <= 0x20 other than space, tab and newline")
        hashes.append(fnv1a(token) & 0xFFFFFFFF)
        numbers += 0x30 <= token[0] <= 0x39
    words = [COMPILE_MAGIC, len(hashes), source.count(b"\n"), numbers, *hashes, fnv1a(source) & 0xFFFFFFFF]
    return b"".join(w.to_bytes(4, "little") for w in words)


def compile_capacity(n: int) -> dict[str, int]:
    """Capacity in sectors of each object file (mkfs.make_fs): its model size, rounded up."""
    return {object_name(i): -(-len(compile_object(compile_source(i))) // SECTOR_SIZE) for i in range(n)}


def compile_model(n: int) -> WorkloadResult:
    """compile n: one child per source (at most COMPILE_JOBS at once) writes its object,
    then the parent links: FNV-1a over every object in order, and totals of tokens and lines."""
    objects = {object_name(i): compile_object(compile_source(i)) for i in range(n)}
    link = FNV_OFFSET
    tokens = lines = 0
    for i in range(n):
        obj = objects[object_name(i)]
        link = fnv1a(obj, link)
        tokens += int.from_bytes(obj[4:8], "little")
        lines += int.from_bytes(obj[8:12], "little")
    out = f"compile n={n} ok={n} tokens={tokens} lines={lines} link={_hex(link)}\n"
    return WorkloadResult(out.encode(), files={**compile_sources(n), **objects})


# ---- mmu --------------------------------------------------------------------------------


def mmu_toggles(n: int) -> int:
    """mmu (b): how many read-only/writable toggles of the range."""
    return (n >> 5) + 1


def mmu_fork_rounds(n: int) -> int:
    """mmu (c): how many fork rounds."""
    return (n >> 12) + 1


def mmu_model(n: int) -> WorkloadResult:
    """mmu n: TLB misses over a large working set, page-table updates, copy-on-write fork.

    (a) n read-modify-writes at random quadwords of W = MMU_PAGES heap pages: x = lcg(x)
    from x = n, page (x >> 33) mod W, quadword (x >> 24) mod 512; the old value is mixed
    into the checksum and value + x stored.  (b) toggles of a range of MMU_RANGE_PAGES
    pages: mprotect read-only, mix the first quadword of every page, mprotect writable,
    add k + 1 to the first quadword of every page.  (c) rounds r: the parent stores
    (p + 1) * LCG_A + r at offset MMU_TOUCH_OFFSET of every page p, forks; the child adds
    0xffff at every MMU_COW_STRIDE-th page (each a copy-on-write break), mixes all W values
    and exits with the checksum's low 7 bits; the parent mixes its own values before the
    fork and after the wait and counts the rounds where they agree.
    """
    mem: dict[int, int] = {}  # quadword address (relative to the heap) -> value
    x = n
    c_tlb = FNV_OFFSET
    for _ in range(n):
        x = lcg_next(x)
        addr = ((x >> 33) % MMU_PAGES) * PAGE_SIZE + ((x >> 24) & 511) * 8
        v = mem.get(addr, 0)
        c_tlb = mix(c_tlb, v)
        mem[addr] = (v + x) & MASK64
    base_b = MMU_PAGES * PAGE_SIZE
    c_prot = FNV_OFFSET
    for k in range(mmu_toggles(n)):
        for p in range(MMU_RANGE_PAGES):
            c_prot = mix(c_prot, mem.get(base_b + p * PAGE_SIZE, 0))
        for p in range(MMU_RANGE_PAGES):
            a = base_b + p * PAGE_SIZE
            mem[a] = (mem.get(a, 0) + k + 1) & MASK64
    rounds = mmu_fork_rounds(n)
    statuses = 0
    c_parent = FNV_OFFSET
    for r in range(rounds):
        vals = [((p + 1) * LCG_A + r) & MASK64 for p in range(MMU_PAGES)]
        c_parent = FNV_OFFSET
        for v in vals:
            c_parent = mix(c_parent, v)
        c_child = FNV_OFFSET
        for p, v in enumerate(vals):
            c_child = mix(c_child, (v + 0xFFFF) & MASK64 if p % MMU_COW_STRIDE == 0 else v)
        statuses += c_child & 0x7F
    out = (
        f"mmu n={n}\ntlb {_hex(c_tlb)}\nmprotect {mmu_toggles(n)} {_hex(c_prot)}\n"
        f"fork {rounds} ok={rounds} child={statuses} parent={_hex(c_parent)}\n"
    )
    return WorkloadResult(out.encode())


# ---- diskio -----------------------------------------------------------------------------

DISKIO_FILE = "data"


def diskio_model(n: int) -> WorkloadResult:
    """diskio n: n sectors of the file ``data`` written in order, read back, then n random
    sector operations.

    Sequential: from x = n, each of the 64 quadwords of each sector is the next x; the
    checksum mixes them as written, and the read-back checksum mixes them as read.  Random:
    x = lcg(x); sector s = (x >> 33) mod n, mixed into the checksum; if bit 32 of x is 0
    the sector is read and its 64 quadwords mixed, else it is written with quadwords x + j
    for j = 0..63.
    """
    data = bytearray()
    x = n
    c_write = FNV_OFFSET
    for _ in range(n):
        for _ in range(SECTOR_SIZE // 8):
            x = lcg_next(x)
            c_write = mix(c_write, x)
            data += x.to_bytes(8, "little")
    c_read = FNV_OFFSET
    for off in range(0, len(data), 8):
        c_read = mix(c_read, int.from_bytes(data[off : off + 8], "little"))
    c_rand = FNV_OFFSET
    for _ in range(n):
        x = lcg_next(x)
        s = (x >> 33) % n
        c_rand = mix(c_rand, s)
        base = s * SECTOR_SIZE
        if (x >> 32) & 1 == 0:
            for j in range(SECTOR_SIZE // 8):
                c_rand = mix(c_rand, int.from_bytes(data[base + 8 * j : base + 8 * j + 8], "little"))
        else:
            for j in range(SECTOR_SIZE // 8):
                data[base + 8 * j : base + 8 * j + 8] = ((x + j) & MASK64).to_bytes(8, "little")
    out = f"diskio n={n} write={_hex(c_write)} read={_hex(c_read)} random={_hex(c_rand)}\n"
    return WorkloadResult(out.encode(), files={DISKIO_FILE: bytes(data)})
