"""Progress of long loops: a tqdm bar with time left in a terminal, and otherwise (a log file under
nohup, CI) one line on stderr now and then with the count and the time left. Under torchrun only
rank 0 reports."""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm

LINE_EVERY_S = float(os.environ.get("ROBUSTPROMPT_PROGRESS_S", "30"))


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressLines:
    """Iterates like tqdm; writes `robustprompt: DESC: i/N (p%), m:ss elapsed, about m:ss left` every
    LINE_EVERY_S seconds (and never for a loop that ends sooner)."""

    def __init__(self, iterable, desc: str = "", total: int | None = None, every: float | None = None, stream=None):
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every = LINE_EVERY_S if every is None else every
        self.stream = stream or sys.stderr
        self.postfix = ""

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in kw.items())

    def line(self, done: int, elapsed: float) -> str:
        text = f"robustprompt: {self.desc}: {done}"
        if self.total:
            text += f"/{self.total} ({100 * done / self.total:.0f}%), {_hms(elapsed)} elapsed"
            if done:
                text += f", about {_hms(elapsed / done * (self.total - done))} left"
        else:
            text += f", {_hms(elapsed)} elapsed"
        return text + (f", {self.postfix}" if self.postfix else "")

    def __iter__(self):
        start = last = time.monotonic()
        for done, item in enumerate(self.iterable, 1):
            yield item
            now = time.monotonic()
            if now - last >= self.every and (self.total is None or done < self.total):
                print(self.line(done, now - start), file=self.stream, flush=True)
                last = now

    def __len__(self):
        return self.total or 0


def progress(iterable, desc: str = "", total: int | None = None):
    if os.environ.get("RANK", "0") != "0":
        return ProgressLines(iterable, desc, total, every=float("inf"))
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
    return ProgressLines(iterable, desc, total)
