; The compute workload (placeholder until it is written: returns 0 at once).
compute_main:                             ; compute_main(r1 = n) -> r1 = exit status
        li      r1, 0
        ret
