#!/usr/bin/env bash
# The long fuzz run under ASan + UBSan (tests/README.md).  Usage:
#   bash .ci/fuzz.sh [INSTRUCTIONS] [--seed S]   play random cases until the core has executed
#                                                INSTRUCTIONS instructions (default 10^8)
#   bash .ci/fuzz.sh --seed S --case K           replay case K of the run of seed S
# It builds the core with the sanitizers in a private copy (.ci/sanitized.sh) and runs
# tests/cffi_core/fuzz_long.py there; it prints the seed, progress and the final figures.  Exit
# status 0: no finding; 1: findings (each printed with the command that replays it); any other:
# the run died, 86 with a sanitizer report above, and the case it died in is printed.
set -euo pipefail
instructions=100000000
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
    instructions=$1
    shift
fi
. "$(dirname "$0")/sanitized.sh"
status="$work/fuzz-case"
rc=0
sanitized python -m tests.cffi_core.fuzz_long --instructions "$instructions" --status "$status" "$@" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
    why="the run died with exit status $rc"
    [ "$rc" -eq 86 ] && why="a sanitizer report (above) ended the run"
    echo "FINDING: $why, in the case: $(cat "$status" 2>/dev/null || echo unknown)" >&2
    echo "replay: bash .ci/fuzz.sh $(cat "$status" 2>/dev/null)" >&2
fi
exit "$rc"
