"""Where a process's large CPU tensors get their memory.

glibc's ``malloc`` hands every block above its mmap threshold (128 KiB, rising with use to at
most 32 MiB) fresh pages from the kernel and returns them on ``free``, and torch's CPU
allocator keeps no cache of its own: a tensor of tens of MiB (a ConvNet-3 activation of 100
images at 28x28 is 40 MiB) pays its page faults and zeroing again every time it is made.
Trajectory matching's plain unroll makes such tensors at every step of every iteration.

``KDDBENCH_CPU_ALLOCATOR`` (read once per process, by :func:`configure`):

* ``heap`` (the default): ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``,
  so large blocks come from the heap and freed ones stay there for the next allocation.
  Measured on the 2-core machine (2026-12-04, one thread, 3 alternating rounds;
  ``benchmarks/bench_allocator.py``): an MTT iteration (100 images, 10 steps, ConvNet-3 at
  28x28) 1.36x faster with the plain unroll and 1.29x with the constant-memory one, at 49% and
  34% more peak resident memory; the shared protocol's (micro-batched) training 1.10x; a DM
  iteration (chunked) 0.98x.
* ``system``: glibc's own settings.

Numbers do not change either way (the same operations on the same values).  Off glibc (macOS,
Windows, musl) nothing is done.  :func:`configure` returns what holds, for the record's
``env``: ``"heap"``, ``"system"`` or ``"unavailable"``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

from .errors import KddbenchError

ENV = "KDDBENCH_CPU_ALLOCATOR"
CHOICES = ("heap", "system")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TRIM_BYTES = 1 << 30

_configured: str | None = None


def _glibc():
    """glibc's ``libc``, or None where the C library is another one."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - an AttributeError off glibc
        libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


def configure(libc_loader=_glibc) -> str:
    """Apply ``KDDBENCH_CPU_ALLOCATOR`` to this process once; what holds (see the module)."""
    global _configured
    if _configured is not None:
        return _configured
    choice = os.environ.get(ENV, "heap").strip().lower() or "heap"
    if choice not in CHOICES:
        raise KddbenchError(f"{ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    libc = libc_loader()
    if libc is None:
        _configured = "unavailable"
    elif choice == "heap":
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1
        _configured = "heap" if ok else "unavailable"
    else:
        _configured = "system"
    return _configured
