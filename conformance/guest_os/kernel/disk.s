; The disk driver (placeholder until it is written: no disk).
disk_init:
        ret
disk_intr:
        ret
