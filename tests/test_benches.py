"""The benchmarks still run: each at a tiny size, in its own process, as an operator
would start it. (bench/store_bench.py once broke for weeks, unnoticed, when the
store's schema changed under its replica.) Sizes here say nothing about speed."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


COMMANDS = [
    "bench/store_bench.py --alerts 600 --rounds 1 --contended 200",
    "bench/store_bench.py --growth --alerts 3000",
    "bench/indicator_bench.py --rounds 1 --values 200",
    "bench/node_bench.py --alerts 1000 --check-store 1500 --rounds 1 --verify-seconds 0.2"
    " --check-calls 3 --check-values 100 --verify-processes 1",
    "bench/tls_bench.py --rounds 1 --warmup 10 --seconds 1 --rate 20 --burst 40 --burst-offset -1",
    "bench/import_bench.py --indicators 1000 --bad 3",
    "bench/pg_bench.py --alerts 2000 --calls 10 --values 100",
    "bench/publish_bench.py --alerts 60 --in-flight-list 1,4 --warmup 10 --floor-calls 20",
    "bench/grpc_floor.py --calls 50 --in-flight 4",
    "bench/check_floor.py --calls 50 --callers 4",
    "bench/latency_floor.py --rates 10 --seconds 1",
    "bench/commit_together.py --processes 1,2 --rounds 5 --rate 50 --shape row,alert --fill 200",
    "bench/cluster_bench.py --warmup 10 --rates 20 --rate-seconds 1 --no-ten --burst 0 --trace"
    " --verify-processes 2 --threads",
    "bench/ingest_ab.py --alerts 400 --batch 100 --stages",
    "bench/ingest_floor.py --alerts 400 --batch 100",
    "bench/ingest_parts.py --alerts 600 --passes 1",
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: Path(c.split()[0]).stem)
def test_benchmark_runs(command: str) -> None:
    done = subprocess.run(
        [sys.executable, *command.split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "|---|" in done.stdout, done.stdout[-2000:]  # its results table


def latency_floor(*args: str) -> tuple[str, list[list[str]]]:
    """Run bench/latency_floor.py; its output and the cells of its table rows."""
    done = subprocess.run(
        [sys.executable, "bench/latency_floor.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    cells = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| ")
        and line.split("|")[1].strip() in ("none", "full", "normal", "product")
    ]
    return done.stdout, cells


def test_latency_floor_with_the_work_reports_each_mode_and_phase() -> None:
    """--work none,full,normal: each mode on its own five processes, a row per paced
    phase with numbers in it, every alert on all five Subscribe streams (no bad
    signature, no store failure), and one verify's CPU measured in the run."""
    stdout, cells = latency_floor(
        "--rates", "10,20", "--seconds", "1,0.5", "--work", "none,full,normal"
    )
    rows = [r for r in cells if len(r) == 12]  # the latency table
    commits = [r for r in cells if len(r) == 7]  # each node's commit times, with work
    assert [(r[0], r[1]) for r in commits] == [
        (work, phase) for work in ("full", "normal") for phase in ("10/s", "20/s")
    ], stdout
    assert all(float(c.split(" / ")[0]) > 0 for r in commits for c in r[2:]), stdout
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (work, phase, alerts)
        for work in ("none", "full", "normal")
        for phase, alerts in (("10/s", "10"), ("20/s", "10"))
    ], stdout
    for row in rows:
        p50, p99 = float(row[3]), float(row[4])
        assert 0 < p50 <= p99, row
        assert row[6] == "0", row  # lost
    assert "One verify (pynacl" in stdout
    assert "One commit alone, synchronous=NORMAL" in stdout
    threads = [r for r in cells if len(r) == 6]  # each process's threads
    assert [(r[0], r[1], r[2]) for r in threads] == [
        (work, phase, role)
        for work in ("none", "full", "normal")
        for phase in ("10/s", "20/s")
        for role in ("origin", "root", "leaf node4")
    ], stdout


def test_latency_floor_product_mode_carries_real_alerts_to_every_stream() -> None:
    """--work product: the origin signs and stores real alerts from PublishRequests, the
    root and the leaves check them completely (check_signed) and store them in the real
    store, and every process sends a SubscribeEvent the client reads back: an alert
    that failed its check anywhere, or did not decode as an event, would be lost."""
    stdout, cells = latency_floor("--rates", "10", "--seconds", "1", "--work", "product")
    latency = [r for r in cells if len(r) == 12]
    assert [(r[0], r[1]) for r in latency] == [("product", "10/s")], stdout
    [row] = latency
    assert row[2] == "10" and row[6] == "0", row  # 10 alerts, none lost
    assert 0 < float(row[3]) <= float(row[4]), row


def test_thread_times_reads_each_thread_of_a_process() -> None:
    """bench/proc_cpu.thread_times: every thread of a process, by its thread id, with its
    CPU seconds and context switches (a thread that waited has switched)."""
    from bench.proc_cpu import thread_times

    started, stop = threading.Event(), threading.Event()
    native: list[int] = []

    def waiter() -> None:
        native.append(threading.get_native_id())
        started.set()
        stop.wait(30)

    t = threading.Thread(target=waiter)
    t.start()
    try:
        assert started.wait(30)
        deadline = time.monotonic() + 30  # a loaded machine may be slow to let it sleep
        while True:
            threads = thread_times(os.getpid())
            if threads[native[0]].voluntary >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    assert os.getpid() in threads  # the main thread's id is the process id
    assert threads[native[0]].voluntary >= 1  # it waited for the event
    assert threads[os.getpid()].user > 0  # this process has run Python
    assert thread_times(2**22 + 12345) == {}  # no such process


def test_thread_share_is_per_alert_and_counts_threads_that_started_in_the_phase() -> None:
    from bench.proc_cpu import ThreadShare, ThreadTimes

    before = {
        10: ThreadTimes("python", 1.0, 0.5, 100, 10),
        11: ThreadTimes("grpc", 0.2, 0.1, 50, 5),
    }
    after = {
        10: ThreadTimes("python", 3.0, 1.5, 300, 50),
        11: ThreadTimes("grpc", 0.6, 0.3, 90, 5),
        12: ThreadTimes("new", 0.1, 0.1, 10, 0),  # started during the phase
    }
    share = ThreadShare.of(10, before, after, 1000)
    assert share.main_user_ms == pytest.approx(2.0)
    assert share.main_system_ms == pytest.approx(1.0)
    assert share.others_ms == pytest.approx((0.4 + 0.2 + 0.2) / 1000 * 1000)
    assert share.voluntary == pytest.approx((200 + 40 + 10) / 1000)
    assert share.involuntary == pytest.approx(40 / 1000)
    assert (share.main_voluntary, share.main_involuntary) == (0.2, 0.04)


def test_node_bench_builds_a_store_once_and_reuses_it(tmp_path: Path) -> None:
    """--reuse-store DIR: the first run builds the store, the next only checks over it."""
    command = [sys.executable, "bench/node_bench.py", "--reuse-store", str(tmp_path / "store")]
    command += ["--check-store", "800", "--check-calls", "3", "--check-values", "100"]
    command += ["--single-calls", "60", "--verify-seconds", "0.2"]
    for first in (True, False):
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        assert ("building a store of 800 alerts" in done.stderr) is first
        assert "| (c) values matched / flagged values asked | 3 / 3 |" in done.stdout


def test_cluster_bench_sets_verify_processes_in_a_reused_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--verify-processes N with a --dir a run has used before: the cluster is there
    already, and each node's [verify] processes is set again (not created anew)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cluster_bench", ROOT / "bench/cluster_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "cluster_bench", bench)  # its dataclasses look there
    spec.loader.exec_module(bench)
    for processes in (2, 1):  # the second run reuses the directory
        bench.set_verify_processes(tmp_path, 3, 1, processes)
        configs = sorted(tmp_path.glob("node*/config.toml"))
        assert len(configs) == 3
        for config in configs:
            assert f"\nprocesses = {processes}\n" in config.read_text()
