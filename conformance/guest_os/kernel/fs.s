; The flat file system (placeholder until it is written: no files).
fs_init:
        ret
fs_open:                               ; fs_open(r1 = name, r2 = flags) -> r1 = file index or -1
        li      r1, -1
        ret
fs_size:
        li      r1, 0
        ret
fs_read:
        li      r1, -1
        ret
fs_write:
        li      r1, -1
        ret
