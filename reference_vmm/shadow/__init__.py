"""Shadow paging (VM/370 style, Fisher-Ogden 2006 §2.2.1), shared by the VMMs that run guests on the host MMU."""

from reference_vmm.shadow.guest_memory import GuestDMA, GuestMemory, HostMap
from reference_vmm.shadow.pager import MAX_ROOTS, Resolution, ShadowPager, Space, pool_size
from reference_vmm.shadow.walk_cache import WalkCache

__all__ = [
    "MAX_ROOTS", "GuestDMA", "GuestMemory", "HostMap", "Resolution", "ShadowPager", "Space", "WalkCache", "pool_size",
]  # fmt: skip
