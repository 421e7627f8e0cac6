#!/usr/bin/env bash
# Builds the C core with ASan + UBSan in a private copy of the tree and runs against it there
# the core's tests, the fuzz tests (the core's, and guest mode's with random VMCS contents),
# every guest-mode test and the passthrough DMA of the platform and of hardware-ept, leaving
# the normal build untouched.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$work"
else
    cp -r . "$work"
fi
cd "$work"
rm -f cffi_core/_p64*.so
P64_SANITIZE=1 python setup.py -q build_ext --inplace 2>&1 | grep -v "^running\|^copying" || true
test -n "$(ls cffi_core/_p64*.so 2>/dev/null)" || { echo "sanitizer build failed" >&2; exit 1; }
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" \
    python -m pytest -q -p no:cacheprovider tests/cffi_core/core tests/cffi_core/test_fuzz_core.py \
        tests/cffi_core/vmx tests/cffi_core/test_platform.py tests/reference_vmm/test_hardware.py "$@"
