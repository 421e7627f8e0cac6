; The last include of every directed paravirtual guest: the page the VMM fills with hypercall stubs (docs/paravirt-abi.md §2.2).
        .align  4096
hypercall_page:
        .space  4096
