#!/usr/bin/env bash
# Sourced by sanitize.sh and fuzz.sh: copies the tree (tracked and untracked files, not ignored
# ones) to a private directory, builds the C core there with ASan + UBSan, leaving the normal
# build untouched, and defines `sanitized CMD...`, which runs CMD in that copy with the sanitizer
# runtimes loaded.  A sanitizer report ends the process with exit status 86.  The copy is removed
# when the sourcing script exits.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$work"
else
    cp -r . "$work"
fi
cd "$work"
rm -rf build cffi_core/_p64*.so  # no object of the normal build may be linked in
P64_SANITIZE=1 python setup.py -q build_ext --inplace 2>&1 | grep -v "^running\|^copying" || true
test -n "$(ls cffi_core/_p64*.so 2>/dev/null)" || { echo "sanitizer build failed" >&2; exit 1; }

sanitized() {
    LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=86 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=86 \
        "$@"
}
