"""How many threads llama.cpp should use, given what the other processes leave free.

llama.cpp's threads meet at a barrier after every operation, so one thread that shares its
core with a busy neighbour (a notebook kernel running pandas or BLAS) holds up all of them:
on 2 cores with one busy process beside it, the stand-in decodes 2-10x slower with 2 threads
than with 1 (README, Performance). ``ThreadTuner`` therefore measures how many cores the
*other* processes keep busy (all CPUs' busy time minus our own process's, from ``/proc/stat``
and ``/proc/self/stat`` on Linux, psutil elsewhere) and asks for the cores that are free:
at least 1, never more than the physical cores. The backend calls ``before_request`` and
``tick`` (between prefill chunks and decode steps; it reads at most every ``interval`` s).

Nothing here knows llama.cpp: the tuner calls ``apply(n_threads, n_threads_batch)``."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Other processes may use this much of a core before it stops counting as free: a shell, an
# editor or a browser tab ticking over must not cost a thread.
TOLERANCE = 0.3
INTERVAL_S = 0.2  # at most one reading per this many seconds while generating
STALE_S = 1.0  # an older reading says nothing about now: probe the run queue instead
PROBE_READS, PROBE_GAP_S = 8, 0.001  # the probe: median of 8 run-queue reads 1 ms apart
PSUTIL_WINDOW_S = 0.05  # without a run queue (macOS, Windows): a short window instead


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU times (seconds) of the CPUs we may run on, at monotonic time ``t``."""

    t: float
    busy: float  # all those CPUs' non-idle time
    total: float  # all those CPUs' time, idle included
    own: float  # this process's CPU time (all its threads)
    n_cpus: int
    running: int | None = None  # runnable tasks right now (Linux), ourselves included
    own_running: int | None = None  # ... of which this process's threads (None: unknown)

    @property
    def others_running(self) -> int | None:
        """Runnable tasks that are not ours (the reading thread itself is always one of ours)."""
        if self.running is None:
            return None
        return max(0, self.running - max(1, self.own_running or 1))


Reader = Callable[[], CpuSample]


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return None


def _own_running(task_dir: str) -> int | None:
    """This process's threads that are runnable now: llama.cpp's workers may still spin for a
    moment after an operation, and they must not look like another process's load."""
    try:
        names = os.listdir(task_dir)
    except OSError:
        return None
    n = 0
    for name in names:
        try:
            with open(f"{task_dir}/{name}/stat") as f:
                n += f.read().rsplit(")", 1)[1].split(None, 1)[0] == "R"
        except (OSError, IndexError):  # a thread that ended meanwhile
            continue
    return n


def read_proc(stat_path: str = "/proc/stat", self_stat: str = "/proc/self/stat",
              cpus: set[int] | None = None, task_dir: str = "/proc/self/task") -> CpuSample:
    """One reading of the Linux kernel's counters: the per-CPU lines of ``/proc/stat`` for
    the CPUs this process may use (a container or ``taskset`` may give it fewer)."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    cpus = _affinity() if cpus is None else cpus
    busy = total = 0
    n, running = 0, None
    with open(stat_path) as f:
        for line in f:
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *vals = line.split()
                if cpus is not None and int(name[3:]) not in cpus:
                    continue
                # user nice system idle iowait irq softirq steal (guest time is inside user)
                v = [int(x) for x in vals[:8]] + [0] * (8 - min(8, len(vals)))
                idle = v[3] + v[4]
                busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7] + idle
                n += 1
            elif line.startswith("procs_running"):
                running = int(line.split()[1])
    with open(self_stat) as f:
        # The command name may hold spaces and parentheses: fields start after the last ")".
        fields = f.read().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return CpuSample(time.monotonic(), busy / hz, total / hz, own / hz, max(1, n), running,
                     _own_running(task_dir) if running is not None else None)


def read_psutil() -> CpuSample:
    """The portable reading (macOS, Windows): psutil's system-wide and process times."""
    import psutil

    ct = psutil.cpu_times()
    idle = ct.idle + getattr(ct, "iowait", 0.0)
    total = sum(ct)
    # guest time is counted inside user on Linux; psutil lists it separately too.
    total -= getattr(ct, "guest", 0.0) + getattr(ct, "guest_nice", 0.0)
    pt = psutil.Process().cpu_times()
    return CpuSample(time.monotonic(), total - idle, total, pt.user + pt.system,
                     psutil.cpu_count() or 1, None)


def default_reader() -> Reader:
    try:
        read_proc()
        return read_proc
    except (OSError, ValueError, IndexError):
        return read_psutil


def physical_cores() -> int:
    """llama.cpp decodes fastest with one thread per physical core (hyper-threads only contend)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency
        n = None
    n = max(1, n or os.cpu_count() or 1)
    cpus = _affinity()
    return min(n, len(cpus)) if cpus else n


def others_busy(a: CpuSample, b: CpuSample) -> float:
    """Cores kept busy by other processes between two readings (0..n_cpus)."""
    dt = b.total - a.total
    if dt <= 0:
        return 0.0
    per_cpu = dt / b.n_cpus  # seconds that passed on each CPU
    others = (b.busy - a.busy - (b.own - a.own)) / per_cpu
    return min(float(b.n_cpus), max(0.0, others))


def threads_for(others: float, physical: int, n_cpus: int) -> int:
    """The free cores, in physical cores (with hyper-threads a busy process takes a logical
    CPU: proportionally half a core), at least 1, at most ``physical``."""
    free = max(0.0, n_cpus - others) * physical / max(n_cpus, physical)
    return max(1, min(physical, math.floor(free + TOLERANCE)))


class ThreadTuner:
    """Keeps llama.cpp's thread counts at the free cores; ``fixed`` pins a count instead."""

    def __init__(self, apply: Callable[[int, int], None], fixed: int | None = None,
                 physical: int | None = None, reader: Reader | None = None,
                 interval: float = INTERVAL_S, stale: float = STALE_S,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.apply = apply
        self.fixed = int(fixed) if fixed else None
        self.physical = max(1, int(physical or physical_cores()))
        self.reader = reader if reader is not None else (None if fixed else default_reader())
        self.interval, self.stale, self.sleep, self.clock = interval, stale, sleep, clock
        self.current = self.fixed or self.physical
        self.others = 0.0  # the latest estimate of the cores others keep busy
        self.changes = 0
        self._last: CpuSample | None = None

    @property
    def auto(self) -> bool:
        return self.fixed is None

    def _set(self, others: float, n_cpus: int) -> int:
        self.others = others
        n = threads_for(others, self.physical, n_cpus)
        if n != self.current:
            self.apply(n, n)
            self.current = n
            self.changes += 1
        return n

    def before_request(self) -> int:
        """The thread count for a request about to start (a fresh look at the machine)."""
        if not self.auto or self.reader is None:
            return self.current
        s = self.reader()
        last, self._last = self._last, s
        if last is not None and 0 < s.t - last.t <= self.stale and s.total > last.total:
            others = others_busy(last, s)
            if threads_for(others, self.physical, s.n_cpus) >= self.physical or s.running is None:
                return self._set(others, s.n_cpus)
            # A recent window that says "busy" may only hold a neighbour's finished burst (a
            # benchmark's other engine, a cell that just ended): taking it at its word ran a
            # whole one-chunk prefill on 1 thread of an idle machine (0.52-0.64x). What
            # counts is who is runnable now, so the run queue has the last word.
        return self._set(self._probe(s), s.n_cpus)

    def _probe(self, s: CpuSample) -> float:
        """Cores other processes keep busy right now: the runnable tasks that are not our
        threads (``/proc/self/task``; llama.cpp's workers may still spin after a request). The
        median of a few reads ignores a process that merely flits by. Without a run queue
        (macOS, Windows): a short window."""
        if s.others_running is not None:
            counts = [s.others_running]
            for _ in range(PROBE_READS - 1):
                self.sleep(PROBE_GAP_S)
                counts.append(self.reader().others_running or 0)
            counts.sort()
            self._last = self.reader()
            return float(counts[len(counts) // 2])
        self.sleep(PSUTIL_WINDOW_S)
        self._last = self.reader()
        return others_busy(s, self._last)

    def tick(self) -> int:
        """Between prefill chunks and decode steps: re-read at most every ``interval`` s."""
        if not self.auto or self.reader is None:
            return self.current
        last = self._last
        if last is not None and self.clock() - last.t < self.interval:
            return self.current
        s = self.reader()
        self._last = s
        if last is None or s.total <= last.total:
            return self.current
        return self._set(others_busy(last, s), s.n_cpus)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "auto" if self.auto else "fixed", "n_threads": self.current,
                "physical_cores": self.physical, "others_busy": round(self.others, 2),
                "changes": self.changes}
