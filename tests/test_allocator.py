"""kddbench.allocator: KDDBENCH_CPU_ALLOCATOR, applied once per process, glibc only."""
import pytest

from kddbench import allocator
from kddbench.errors import KddbenchError


class FakeLibc:
    def __init__(self, answer=1):
        self.calls, self.answer = [], answer

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.answer


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_configured", None)
    monkeypatch.delenv(allocator.ENV, raising=False)
    yield
    # the real process keeps what its first configure() applied
    monkeypatch.setattr(allocator, "_configured", None)


def test_heap_is_the_default_and_is_applied_once():
    libc = FakeLibc()
    assert allocator.configure(lambda: libc) == "heap"
    assert libc.calls == [(allocator.M_MMAP_MAX, 0),
                          (allocator.M_TRIM_THRESHOLD, allocator.TRIM_BYTES)]
    assert allocator.configure(lambda: libc) == "heap" and len(libc.calls) == 2


def test_system_leaves_glibc_alone(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "System ")
    libc = FakeLibc()
    assert allocator.configure(lambda: libc) == "system" and libc.calls == []


def test_off_glibc_or_refused_nothing_holds():
    assert allocator.configure(lambda: None) == "unavailable"
    allocator._configured = None
    assert allocator.configure(lambda: FakeLibc(answer=0)) == "unavailable"


def test_a_typo_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "heeap")
    with pytest.raises(KddbenchError, match="KDDBENCH_CPU_ALLOCATOR='heeap': expected one of "
                                            "heap, system"):
        allocator.configure(lambda: FakeLibc())


def test_every_record_says_which_holds():
    from kddbench.plugins import get_registry
    from kddbench.runner import environment

    assert environment(get_registry(), "cpu")["cpu_allocator"] in ("heap", "system",
                                                                    "unavailable")
