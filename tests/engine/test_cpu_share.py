"""Thread counts chosen from what other processes leave free (minicpm.cpu_share)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from minicpm import cpu_share
from minicpm.cpu_share import CpuSample, ThreadTuner, others_busy, read_proc, threads_for

HZ = 100


def stat_text(ticks: list[tuple[int, int]], running: int = 1) -> str:
    """A /proc/stat with one line per CPU: (busy ticks, idle ticks)."""
    lines = [f"cpu  {sum(b for b, _ in ticks)} 0 0 {sum(i for _, i in ticks)} 0 0 0 0 0 0"]
    for n, (busy, idle) in enumerate(ticks):
        # busy split over user, system and steal; idle over idle and iowait
        lines.append(f"cpu{n} {busy - 2 * (busy // 3)} 0 {busy // 3} {idle - idle // 4} "
                     f"{idle // 4} 0 0 {busy // 3} 0 0")
    lines += ["intr 0", f"procs_running {running}", "procs_blocked 0"]
    return "\n".join(lines) + "\n"


def self_stat(own_ticks: int) -> str:
    # the command name holds spaces and a ")" on purpose
    return (f"4242 (python (x) y) R 1 1 1 0 -1 0 0 0 0 0 {own_ticks - own_ticks // 2} "
            f"{own_ticks // 2} 0 0 20 0 1 0\n")


class FakeProc:
    """A machine with ``n`` CPUs whose counters advance as the test says."""

    def __init__(self, tmp_path, n: int = 2):
        self.stat, self.self_stat = tmp_path / "stat", tmp_path / "self_stat"
        self.tasks = tmp_path / "task"
        self.ticks = [(0, 0)] * n
        self.own, self.running, self.own_running, self.t = 0, 1, 1, 0.0

    def advance(self, seconds: float, others: float, own: float, running: int = 1,
                own_running: int = 1) -> None:
        """``seconds`` pass with ``others`` cores busy elsewhere and ``own`` cores ours;
        then ``running`` tasks are runnable, ``own_running`` of them our threads."""
        n = len(self.ticks)
        busy_each = (others + own) / n
        step = round(seconds * HZ)
        self.ticks = [(b + round(step * busy_each), i + step - round(step * busy_each))
                      for b, i in self.ticks]
        self.own += round(step * own)
        self.running, self.own_running, self.t = running, own_running, self.t + seconds

    def read(self) -> CpuSample:
        self.stat.write_text(stat_text(self.ticks, self.running))
        self.self_stat.write_text(self_stat(self.own))
        # our threads: the reader and llama.cpp's workers, ``own_running`` of them runnable
        for i in range(4):
            (self.tasks / str(100 + i)).mkdir(parents=True, exist_ok=True)
            state = "R" if i < self.own_running else "S"
            (self.tasks / str(100 + i) / "stat").write_text(f"{100 + i} (py (x)) {state} 1 1\n")
        s = read_proc(str(self.stat), str(self.self_stat), cpus=set(range(len(self.ticks))),
                      task_dir=str(self.tasks))
        return CpuSample(self.t, s.busy, s.total, s.own, s.n_cpus, s.running, s.own_running)


def test_read_proc_parses_the_kernel_format(tmp_path):
    m = FakeProc(tmp_path, n=4)
    m.advance(2.0, others=1.0, own=0.5, running=3)
    s = m.read()
    hz = os.sysconf("SC_CLK_TCK")
    assert s.n_cpus == 4 and s.running == 3 and s.own_running == 1 and s.others_running == 2
    assert s.total == pytest.approx(4 * 2.0 * HZ / hz)
    assert s.busy == pytest.approx(1.5 * 2.0 * HZ / hz)
    assert s.own == pytest.approx(0.5 * 2.0 * HZ / hz)
    # only the CPUs we may run on count
    only = read_proc(str(m.stat), str(m.self_stat), cpus={0, 1})
    assert only.n_cpus == 2 and only.total == pytest.approx(s.total / 2)


@pytest.mark.parametrize(("others", "own", "physical", "n_cpus", "want"), [
    (0.0, 2.0, 2, 2, 2),  # idle machine, our 2 threads busy: keep 2
    (0.05, 0.0, 2, 2, 2),  # an editor ticking over costs no thread
    (0.67, 1.33, 2, 2, 1),  # one busy process beside our 2 threads (it gets 2/3 of a core)
    (1.0, 1.0, 2, 2, 1),  # ... and beside our 1 thread: stay at 1
    (2.0, 0.0, 2, 2, 1),  # everything taken: at least 1
    (1.0, 0.0, 8, 8, 7),
    (3.2, 0.0, 8, 8, 5),
    (0.0, 0.0, 4, 8, 4),  # hyper-threads: never more than the physical cores
    (2.0, 0.0, 4, 8, 3),  # two busy processes on 8 logical CPUs take ~1 physical core
])
def test_choice_under_a_simulated_busy_machine(tmp_path, others, own, physical, n_cpus, want):
    m = FakeProc(tmp_path, n=n_cpus)
    a = m.read()
    m.advance(1.0, others=others, own=own)
    b = m.read()
    assert others_busy(a, b) == pytest.approx(others, abs=0.05)
    assert threads_for(others_busy(a, b), physical, n_cpus) == want


def test_tuner_follows_load_as_it_comes_and_goes(tmp_path):
    m = FakeProc(tmp_path, n=2)
    applied: list[tuple[int, int]] = []
    tuner = ThreadTuner(lambda n, nb: applied.append((n, nb)), physical=2, reader=m.read,
                        sleep=lambda s: None, clock=lambda: m.t)
    assert tuner.before_request() == 2 and applied == []  # run queue: only ourselves
    m.advance(0.1, others=0.0, own=2.0)
    assert tuner.tick() == 2  # too soon to read again
    m.advance(0.2, others=0.67, own=1.33)  # a cell starts computing
    assert tuner.tick() == 1 and applied == [(1, 1)]
    m.advance(0.3, others=1.0, own=1.0)
    assert tuner.tick() == 1 and applied == [(1, 1)]  # no flapping
    m.advance(0.3, others=0.0, own=1.0)  # the cell finished
    assert tuner.tick() == 2 and applied == [(1, 1), (2, 2)]
    assert tuner.to_dict()["changes"] == 2


def test_a_stale_reading_gives_way_to_the_run_queue(tmp_path):
    """Minutes after the last request, the average since then says nothing about now: the
    tuner counts the runnable tasks that are not ours."""
    m = FakeProc(tmp_path, n=2)
    applied: list[tuple[int, int]] = []
    tuner = ThreadTuner(lambda n, nb: applied.append((n, nb)), physical=2, reader=m.read,
                        sleep=lambda s: None, clock=lambda: m.t)
    tuner.before_request()
    m.advance(300.0, others=0.02, own=0.0, running=2)  # mostly idle, but busy right now
    assert tuner.before_request() == 1 and applied == [(1, 1)]
    m.advance(0.3, others=0.0, own=1.0, running=2)  # a fresh window overrules the probe
    assert tuner.before_request() == 2


def test_a_finished_burst_in_a_recent_window_does_not_cost_threads(tmp_path):
    """A neighbour's burst that ended just before the request (another engine's turn in a
    benchmark, a cell that just finished) fills the last window; the run queue says the
    machine is free now, so the request gets every core."""
    m = FakeProc(tmp_path, n=2)
    applied: list[tuple[int, int]] = []
    tuner = ThreadTuner(lambda n, nb: applied.append((n, nb)), physical=2, reader=m.read,
                        sleep=lambda s: None, clock=lambda: m.t)
    tuner.before_request()
    m.advance(0.5, others=2.0, own=0.0, running=1)  # busy window, nobody runnable now
    assert tuner.before_request() == 2 and applied == []
    m.advance(0.5, others=1.0, own=0.0, running=2)  # busy window, still busy now
    assert tuner.before_request() == 1 and applied == [(1, 1)]


def test_our_own_spinning_workers_are_not_someone_else(tmp_path):
    """Right after a request llama.cpp's worker threads may still spin: runnable, but ours.
    Only the runnable tasks that are not our threads count."""
    m = FakeProc(tmp_path, n=2)
    applied: list[tuple[int, int]] = []
    tuner = ThreadTuner(lambda n, nb: applied.append((n, nb)), physical=2, reader=m.read,
                        sleep=lambda s: None, clock=lambda: m.t)
    tuner.before_request()
    m.advance(0.5, others=1.0, own=0.0, running=2, own_running=2)  # the busy one was ours
    assert m.read().others_running == 0
    assert tuner.before_request() == 2 and applied == []
    m.advance(0.5, others=1.0, own=0.0, running=3, own_running=2)  # plus one of someone else's
    assert tuner.before_request() == 1 and applied == [(1, 1)]


def test_a_setting_pins_the_count():
    calls: list[tuple[int, int]] = []

    def reader() -> CpuSample:
        raise AssertionError("a fixed count reads nothing")

    tuner = ThreadTuner(lambda n, nb: calls.append((n, nb)), fixed=3, physical=2, reader=reader)
    assert tuner.before_request() == 3 and tuner.tick() == 3 and calls == []
    assert tuner.to_dict()["mode"] == "fixed"


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc")
def test_real_busy_processes_are_seen():
    """Real counters, real load: two spinning processes are counted as others' (not ours)."""
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        a = read_proc()
        time.sleep(0.5)
        b = read_proc()
    finally:
        for p in spin:
            p.kill()
            p.wait()
    # Others may load this machine too: the two spinners are a floor, bounded by what they
    # can get (at least a third of a core each when three processes share one core).
    assert others_busy(a, b) >= min(1.0, b.n_cpus / 3)
    phys = cpu_share.physical_cores()
    assert threads_for(others_busy(a, b), phys, b.n_cpus) <= max(1, phys - 1)


class Scripted:
    """A simulated machine for the real backend: each reading is 0.25 s after the last; other
    processes keep ``others`` cores busy, from reading number ``busy_from`` on."""

    def __init__(self, n_cpus: int = 2, others: float = 1.0, busy_from: int = 10**9):
        self.n, self.others, self.busy_from = n_cpus, others, busy_from
        self.reads, self.t, self.busy, self.total = 0, 0.0, 0.0, 0.0

    def read(self) -> CpuSample:
        self.reads += 1
        self.t += 0.25
        self.total += 0.25 * self.n
        if self.reads > self.busy_from:
            self.busy += 0.25 * self.others
        return CpuSample(self.t, self.busy, self.total, 0.0, self.n, 1)

    def clock(self) -> float:
        return self.t + 1.0  # every tick finds the last reading old enough to read again


def engine_threads(engine) -> tuple[int, int]:
    import llama_cpp

    ctx = engine.backend.llm.ctx
    return llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)


def scripted_tuner(engine, machine: Scripted) -> None:
    b = engine.backend
    b.threads = ThreadTuner(b._set_threads, physical=2, reader=machine.read,
                            sleep=lambda s: None, clock=machine.clock)
    b.kv.tune = b.threads.tick
    b._set_threads(2, 2)


def test_the_backend_changes_its_threads_when_load_appears():
    """The real stand-in under a simulated machine: load found before a request, and load
    that appears in the middle of one (between decode steps), change llama.cpp's counts."""
    pytest.importorskip("llama_cpp")
    import minicpm

    with minicpm.load(n_ctx=512, speculative="off") as engine:
        assert engine.info.extra["n_threads"] == "auto"
        machine = Scripted(busy_from=10**9)
        scripted_tuner(engine, machine)
        engine.complete("def f(x):", max_tokens=4, temperature=0).read()
        assert engine_threads(engine) == (2, 2)
        machine.busy_from = machine.reads  # a cell starts computing
        g = engine.complete("def f(x):", max_tokens=4, temperature=0)
        g.read()
        assert engine_threads(engine) == (1, 1)
        assert engine.stats()["threads"]["n_threads"] == 1
        # idle again, then load appears after the request has started: it yields mid-way
        machine.busy_from, machine.others = 10**9, 0.0
        engine.complete("x = 1", max_tokens=2, temperature=0).read()
        assert engine_threads(engine) == (2, 2)
        machine.others, machine.busy_from = 1.0, machine.reads + 2
        g = engine.complete("for i in range(10):", max_tokens=24, temperature=0,
                            ignore_eos=True)
        assert len(g.read()) > 0 and g.usage.completion_tokens == 24
        assert engine_threads(engine) == (1, 1)


def test_a_pinned_count_stays():
    pytest.importorskip("llama_cpp")
    import minicpm

    with minicpm.load(n_ctx=512, n_threads=1, speculative="off") as engine:
        assert engine.info.extra["n_threads"] == 1
        engine.complete("x =", max_tokens=2, temperature=0).read()
        assert engine_threads(engine) == (1, 1)
        assert engine.stats()["threads"]["mode"] == "fixed"


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc")
def test_real_load_makes_the_backend_yield():
    """Real counters and real busy processes beside the real stand-in."""
    pytest.importorskip("llama_cpp")
    import minicpm

    phys = cpu_share.physical_cores()
    if phys < 2:
        pytest.skip("one core: nothing to yield")
    with minicpm.load(n_ctx=512, speculative="off") as engine:
        spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(phys)]
        try:
            time.sleep(0.5)
            engine.complete("def f(x):", max_tokens=16, temperature=0, ignore_eos=True).read()
        finally:
            for p in spin:
                p.kill()
                p.wait()
        assert engine_threads(engine)[0] <= phys - 1
