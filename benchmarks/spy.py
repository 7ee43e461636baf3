"""py-spy sampling of loaded server workers, for load_bench.py --py-spy.

cProfile under eventlet charges the waiting to whichever green thread switched last, so it cannot
say where a loaded worker spends its CPU; a sampling profiler from outside can. Each worker is
sampled (`py-spy record --format raw`, collapsed stacks) for the length of the load, and the
functions holding the most samples are printed: own samples (the function itself at the top of
the stack) and inclusive ones (anywhere in the stack).
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")


class Spy:
    """py-spy recording the given pids into `folder`, one raw file each, from `start()` to `stop()`."""

    def __init__(self, folder: Path, pids: dict[str, int], rate: int = 67) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.pids, self.rate = pids, rate
        self.files = {name: folder / f"py-spy-{name}.txt" for name in pids}
        self.processes: list[subprocess.Popen] = []
        self.executable = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
        if self.executable is None:
            raise SystemExit("--py-spy needs py-spy (pip install -r requirements-dev.txt)")

    def start(self) -> None:
        for name, pid in self.pids.items():
            self.processes.append(subprocess.Popen(
                [self.executable, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw",
                 "--output", str(self.files[name]), "--nonblocking", "--threads"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        """SIGINT: py-spy writes what it sampled and exits (again: nothing)."""
        processes, self.processes = self.processes, []
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def report(self, top: int = 25) -> str:
        return "\n".join(summarise(path, self.pids[name], top) for name, path in self.files.items() if path.exists())


def summarise(path: Path, main_thread: int, top: int = 25) -> str:
    """The functions with the most own and inclusive samples of the event loop's thread (the
    worker's main thread) in one raw (collapsed-stack) file; other threads (tpool: SQLite, the
    embedding model) are counted apart, since they run beside it, not in its place."""
    own, inclusive, total, others = Counter(), Counter(), 0, 0
    main = f"thread ({main_thread})"
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        if thread != main or not frames:
            others += int(count)
            continue
        samples = int(count)
        total += samples
        own[_short(frames[-1])] += samples
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += samples
    if not total:
        return f"{path.name}: no samples of the main thread"
    lines = [f"{path.name}: {total} samples of the event loop's thread, {others} of other threads",
             "own %   | inclusive % | function"]
    for frame, _ in own.most_common(top):
        lines.append(f"{100 * own[frame] / total:6.1f} | {100 * inclusive[frame] / total:6.1f} | {frame}")
    lines.append("inclusive, largest first:")
    for frame, samples in inclusive.most_common(top * 2):
        lines.append(f"       | {100 * samples / total:6.1f} | {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`function (path/to/file.py:12)` -> `function (file.py)`: lines apart are one function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name
