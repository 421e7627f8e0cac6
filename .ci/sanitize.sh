#!/usr/bin/env bash
# Builds the C core with ASan + UBSan in a private copy of the tree (.ci/sanitized.sh) and runs
# against it there the core's tests (the memory-safety ones among them), the fuzz tests (the
# core's, and guest mode's with random VMCS contents and host calls), every guest-mode test and
# the passthrough DMA of the platform and of hardware-ept, the binding's views used after their
# owner is gone and its argument checks, and the guest software (p64os's workloads, nanobench
# natively and under the VMMs), leaving the normal build untouched.
# The long fuzz run is .ci/fuzz.sh.
set -euo pipefail
. "$(dirname "$0")/sanitized.sh"
HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" \
    sanitized python -m pytest -q -p no:cacheprovider tests/cffi_core/core tests/cffi_core/test_fuzz_core.py \
        tests/cffi_core/core/test_core_memory_safety.py tests/cffi_core/vmx tests/cffi_core/test_platform.py \
        tests/cffi_core/test_binding_lifetimes.py tests/cffi_core/test_binding_arguments.py \
        tests/reference_vmm/test_hardware.py tests/guest_os/test_workloads.py tests/guest_os/test_nanobench.py "$@"
