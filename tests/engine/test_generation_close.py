"""``Generation.close`` never raises, so no caller guards it (no model needed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from minicpm.api import Generation
from minicpm.backends.base import Usage


def test_close_after_a_failing_cleanup_twice_and_after_the_end() -> None:
    def run(cancel: threading.Event, usage: Usage) -> Iterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            raise RuntimeError("cleanup failed")

    gen = Generation(run)
    assert next(gen) == "a"
    gen.close()  # the run's cleanup raises inside close: swallowed
    gen.close()
    assert gen.cancelled
    done = Generation(lambda cancel, usage: iter(["x"]))
    assert done.read() == "x"
    done.close()


def test_close_from_another_thread_while_it_runs() -> None:
    inside, release = threading.Event(), threading.Event()

    def run(cancel: threading.Event, usage: Usage) -> Iterator[str]:
        while not cancel.is_set():
            inside.set()
            release.wait()
            yield "t"

    gen = Generation(run)
    worker = threading.Thread(target=gen.read)
    worker.start()
    inside.wait()
    gen.close()  # the generator is executing in the other thread: the cancel flag stops it
    release.set()
    worker.join()
    assert gen.cancelled and gen.text == "t"
