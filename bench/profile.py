"""Issue #19: where the CPU of a burst or a raw run goes. Prints the top costs and CPU per invoice.

    .venv/bin/python bench/profile.py raw [--raw-invoices 2000] [--out DIR]
    .venv/bin/python bench/profile.py burst [--invoices 1000]

Runs one part of bench/throughput.py (any of its options) while `py-spy record` samples every
celery worker process and its pool children (`--subprocesses`), and this process, which serves
both sandboxes, at 100 Hz without pausing them (`--nonblocking`), keeping only samples that hold
the GIL (`--gil`: running Python, not waiting on a socket), so the counts approximate CPU. It
writes the collapsed stacks (DIR/*.txt, for flamegraph tools or speedscope) and prints, per
process group: the share of samples by area (celery/kombu, redis-py, httpx, pydantic, json,
logging, our packages by name, ...), the top functions by own time, and the top functions by
time including what they call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import throughput
from parts import common

RATE = 100
AREAS = [  # (area, a piece of the frame's file path), first match wins
    ("celery", "/celery/"),
    ("vine", "/vine/"),
    ("kombu", "/kombu/"),
    ("billiard", "/billiard/"),
    ("redis-py", "/redis/"),
    ("sqlalchemy", "/sqlalchemy/"),  # the system of record (SQLite's C calls are in its frames)
    ("alembic", "/alembic/"),
    ("httpx", "/httpx/"),
    ("httpcore", "/httpcore/"),
    ("h11", "/h11/"),
    ("pydantic", "/pydantic"),
    ("json", "/json/"),
    ("simplejson", "/simplejson/"),
    ("structlog", "/structlog/"),
    ("logging", "/logging/"),
    ("uvicorn", "/uvicorn/"),
    ("starlette", "/starlette/"),
    ("anyio", "/anyio/"),
    ("asyncio", "/asyncio/"),
    ("ssl/socket", "/socket.py"),
    ("threading", "/threading.py"),
    ("sandbox", "/sandbox/"),
    ("workers", "/workers/"),
    ("tasks", "/tasks/"),
    ("clients", "/clients/"),
    ("schemas", "/schemas/"),
    ("zxsync", "/zxsync/"),
    ("bench", "/bench/"),
]
SPREAD = 0.5  # frames under more than this share of the samples are the loops everything runs in


class Recorder:
    """One py-spy per worker process (with its pool children) and one for this process."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.spies: list[subprocess.Popen[bytes]] = []

    def attach(self, procs: list[subprocess.Popen[bytes]]) -> None:
        targets = [(f"workers-{p.pid}", p.pid, True) for p in procs]
        targets.append(("sandboxes", os.getpid(), False))
        for name, pid, subprocesses in targets:
            command = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--nonblocking",
                "--gil",
                "--output",
                str(self.out / f"{name}.txt"),
            ]
            if subprocesses:
                command.append("--subprocesses")
            self.spies.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

    def stop(self) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self.spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()


def area(frame: str) -> str:
    """py-spy names files relative to their sys.path entry: `(celery/app/task.py:...)`."""
    path = "/" + frame.rpartition("(")[2]
    return next((name for name, piece in AREAS if piece in path), "other")


def load(path: Path) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # py-spy puts the process and thread first: drop them, keep the frames
            frames = [f for f in stack.split(";") if "(" in f]
            stacks[";".join(frames)] += int(count)
    return stacks


def summarise(name: str, stacks: Counter[str], invoices: int, top: int) -> None:
    total = sum(stacks.values())
    if not total:
        print(f"\n== {name}: no samples")
        return
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        own[frames[-1]] += count
        areas[area(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    ms = 1000 / RATE / max(invoices, 1)  # one sample is 10 ms of CPU
    print(f"\n== {name}: {total} samples = {total / RATE:.1f} CPU s, {total * ms:.1f} ms/invoice")
    print("   own time by area:")
    for label, count in areas.most_common(top):
        print(f"     {count / total:6.1%} {count * ms:7.2f} ms/inv  {label}")
    print("   top functions, own time:")
    for frame, count in own.most_common(top):
        print(f"     {count / total:6.1%} {count * ms:7.2f} ms/inv  {_short(frame)}")
    print(f"   top functions including what they call (under {SPREAD:.0%} of the samples):")
    spread = [(f, c) for f, c in inclusive.most_common() if c <= SPREAD * total]
    for frame, count in spread[:top]:
        print(f"     {count / total:6.1%} {count * ms:7.2f} ms/inv  {_short(frame)}")


def _short(frame: str) -> str:
    return frame.replace(str(Path(sys.executable).parents[1]), ".venv")[:150]


def main() -> None:
    out = Path(os.environ.get("ZXS_PROFILE_DIR") or tempfile.mkdtemp(prefix="zxs-profile-"))
    argv = sys.argv[1:]
    if "--out" in argv:
        at = argv.index("--out")
        out = Path(argv[at + 1])
        del argv[at : at + 2]
    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(out)
    common.ON_WORKERS.append(recorder.attach)
    sys.argv = [sys.argv[0], *argv, "--json", str(out / "figures.json")]
    began = time.monotonic()
    try:
        throughput.main()
    except SystemExit:
        pass
    finally:
        recorder.stop()
    import json

    figures = json.loads((out / "figures.json").read_text())["figures"]
    created = [f["value"] for f in figures if f["name"] in ("invoices created",)]
    invoices = int(str(created[0]).split("/")[0]) if created else 0
    print(f"\n== profile of {argv[0]} ({time.monotonic() - began:.0f} s), stacks in {out}")
    workers: Counter[str] = Counter()
    for path in sorted(out.glob("workers-*.txt")):
        workers.update(load(path))
    summarise("worker processes", workers, invoices, 25)
    sandboxes = out / "sandboxes.txt"
    if sandboxes.exists():
        summarise("this process (both sandboxes)", load(sandboxes), invoices, 12)


if __name__ == "__main__":
    main()
