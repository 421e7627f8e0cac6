"""p64os and nanobench under the binary-translation VMM: every workload (small sizes, ktest and fstest too) and every nanobenchmark equivalent to its native run, on the profiles binary translation is graded on."""

from __future__ import annotations

import pytest

from conformance.api import observe
from conformance.guest_os import OS_SOURCE, WORKLOADS, os_config, os_image
from conformance.guest_os.nanobench import NANOBENCHMARKS, nanobench_config, nanobench_image
from reference_vmm.binary_translation import BinaryTranslationVMM
from reference_vmm.native import NativeVMM
from tests.guest_os.test_workloads import SMALL_N

needs_kernel = pytest.mark.skipif(not OS_SOURCE.exists(), reason="os.s (the p64os kernel) is not in the tree yet")
# x86-2005: the segment limits keep the kernel out of the TC and the VMM's data; x86-64-2005:
# the TC protected by paging alone (the kernel's own memory never reaches the reserved top, so
# it runs the same).  On classic-1974 the kernel is not translated: it runs directly at ring 3.
PROFILES = ["x86-2005", "x86-64-2005"]


def _same(image, config, profile: str) -> dict[str, int]:
    native = observe(NativeVMM, image, config, profile=profile)
    translated = observe(BinaryTranslationVMM, image, config, profile=profile)
    assert native.stop == "exit", native.console[-300:]
    assert native.equivalent(translated), "\n".join(native.diff(translated, ("native", "binary-translation")))
    return dict(translated.counters)


@needs_kernel
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_under_binary_translation(name: str, profile: str) -> None:
    counters = _same(os_image(), os_config(name, SMALL_N.get(name)), profile)
    assert counters["fragments_translated"] > 0  # the kernel ran from the TC


@needs_kernel
@pytest.mark.parametrize("name", sorted(NANOBENCHMARKS))
def test_nanobenchmark_under_binary_translation(name: str) -> None:
    _same(nanobench_image(), nanobench_config(name, 20), "x86-2005")
