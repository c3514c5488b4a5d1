"""CPU time read from /proc, shared by the benches."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores of the machine spent busy since boot: all but idle and
    iowait (/proc/stat); 0.0 where /proc/stat cannot be read."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    return 0.0


@dataclass(frozen=True)
class ThreadTimes:
    """One thread's CPU seconds and context switches so far (/proc/PID/task/TID)."""

    name: str
    user: float
    system: float
    voluntary: int  # it waited (a read, a lock, epoll) and was woken
    involuntary: int  # the scheduler took its core while it could run


def thread_times(pid: int) -> dict[int, ThreadTimes]:
    """Every thread of a process so far, by thread id; {} if the process is gone. A
    thread that ends between the listing and the reads is left out, and so is one that
    has ended (the node's threads live as long as it does). Context switches are 0
    where /proc/PID/task/TID/status does not count them."""
    out: dict[int, ThreadTimes] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                name, _, rest = (task / "stat").read_text().partition(" (")[2].rpartition(")")
                fields = rest.split()
                switches = {}
                for line in (task / "status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key.endswith("voluntary_ctxt_switches"):
                        switches[key] = int(value)
                out[int(task.name)] = ThreadTimes(
                    name,
                    int(fields[11]) / CLOCK_TICKS,  # utime
                    int(fields[12]) / CLOCK_TICKS,  # stime
                    switches.get("voluntary_ctxt_switches", 0),
                    switches.get("nonvoluntary_ctxt_switches", 0),
                )
    return out


@dataclass(frozen=True)
class ThreadShare:
    """Where one node process's CPU went over a phase, per alert: its main thread (the
    event loop) in user and kernel mode, its other threads (gRPC's, SQLite's writer,
    aiosqlite's), and how often its threads gave up a core (all threads; the main
    thread's own in brackets). Its verifier processes are not counted, nor threads that
    ended within the phase (thread_times)."""

    main_user_ms: float
    main_system_ms: float
    others_ms: float
    voluntary: float
    involuntary: float
    main_voluntary: float
    main_involuntary: float

    @staticmethod
    def of(
        pid: int, before: dict[int, ThreadTimes], after: dict[int, ThreadTimes], n: int
    ) -> ThreadShare:
        zero = ThreadTimes("", 0.0, 0.0, 0, 0)
        main0, main1 = before.get(pid, zero), after.get(pid, zero)
        others = vol = invol = 0.0
        for tid, t in after.items():
            b = before.get(tid, zero)
            vol += t.voluntary - b.voluntary
            invol += t.involuntary - b.involuntary
            if tid != pid:
                others += t.user + t.system - b.user - b.system
        return ThreadShare(
            (main1.user - main0.user) / n * 1000,
            (main1.system - main0.system) / n * 1000,
            others / n * 1000,
            vol / n,
            invol / n,
            (main1.voluntary - main0.voluntary) / n,
            (main1.involuntary - main0.involuntary) / n,
        )
