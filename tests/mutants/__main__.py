"""``python -m tests.mutants``: the mutation runner (``conformance.mutation``) on this catalog."""

import sys

from conformance.mutation import main

sys.exit(main(sys.argv[1:]))
