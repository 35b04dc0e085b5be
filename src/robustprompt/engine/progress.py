"""Progress of long loops: a tqdm bar with time left in a terminal, and otherwise (a log file under
nohup, CI) one line on stderr now and then with the count and the time left. A loop that is one of
several passes of the same length (a training epoch) also gives the time left to the end of them all,
estimated from this pass's pace. Under torchrun only rank 0 reports."""

from __future__ import annotations

import os
import sys
import threading
import time

from tqdm.auto import tqdm

LINE_EVERY_S = float(os.environ.get("ROBUSTPROMPT_PROGRESS_S", "30"))


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def time_to_end(done: int, total: int | None, elapsed: float, passes_after: int) -> float | None:
    """Seconds left in this pass and the `passes_after` passes of the same length after it, at this pass's pace."""
    if not done or not total:
        return None
    per_item = elapsed / done
    return per_item * (total - done) + per_item * total * passes_after


class ProgressLines:
    """Iterates like tqdm; writes `robustprompt: DESC: i/N (p%), m:ss elapsed, about m:ss left` every
    LINE_EVERY_S seconds (and never for a loop that ends sooner), also while one item runs longer than
    that (the count then stays, the elapsed time grows); with `passes_after`, also the time left to the
    end of `whole` (e.g. "training")."""

    def __init__(self, iterable, desc: str = "", total: int | None = None, every: float | None = None, stream=None,
                 passes_after: int = 0, whole: str = "all"):
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every = LINE_EVERY_S if every is None else every
        self.stream = stream or sys.stderr
        self.postfix = ""
        self.passes_after = passes_after
        self.whole = whole

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in kw.items())

    def line(self, done: int, elapsed: float) -> str:
        text = f"robustprompt: {self.desc}: {done}"
        if self.total:
            text += f"/{self.total} ({100 * done / self.total:.0f}%), {_hms(elapsed)} elapsed"
            if done:
                text += f", about {_hms(time_to_end(done, self.total, elapsed, 0))} left"
                if self.passes_after:
                    text += f" ({self.whole}: about {_hms(time_to_end(done, self.total, elapsed, self.passes_after))})"
        else:
            text += f", {_hms(elapsed)} elapsed"
        return text + (f", {self.postfix}" if self.postfix else "")

    def __iter__(self):
        start = time.monotonic()
        state = {"done": 0, "last": start}
        lock = threading.Lock()

        def report(now: float) -> None:
            with lock:
                if now - state["last"] >= self.every and (self.total is None or state["done"] < self.total):
                    print(self.line(state["done"], now - start), file=self.stream, flush=True)
                    state["last"] = now

        stop = threading.Event()
        if 0 < self.every < float("inf"):
            # one item can outlast many intervals (an attacked batch takes minutes), so a timer reports too
            def heartbeat():
                while not stop.wait(self.every):
                    report(time.monotonic())

            threading.Thread(target=heartbeat, daemon=True).start()
        try:
            for done, item in enumerate(self.iterable, 1):
                yield item
                state["done"] = done
                report(time.monotonic())
        finally:
            stop.set()

    def __len__(self):
        return self.total or 0


class _Bar(tqdm):
    """tqdm whose postfix also holds the time left to the end of `whole` when more passes follow."""

    def __init__(self, *args, passes_after: int = 0, whole: str = "all", **kwargs):
        self.passes_after, self.whole = passes_after, whole
        super().__init__(*args, **kwargs)

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        left = time_to_end(self.n, self.total, self._time() - self.start_t, self.passes_after)
        if self.passes_after and left is not None:
            kwargs[self.whole] = f"~{_hms(left)} left"
        super().set_postfix(ordered_dict, refresh, **kwargs)


def progress(iterable, desc: str = "", total: int | None = None, passes_after: int = 0, whole: str = "all"):
    """A progress bar or, without a terminal, progress lines; `passes_after` more passes of the same length
    follow this one (the epochs after this one), and the time left to the end of `whole` is shown too."""
    if os.environ.get("RANK", "0") != "0":
        return ProgressLines(iterable, desc, total, every=float("inf"))
    if sys.stderr.isatty():
        return _Bar(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True,
                    passes_after=passes_after, whole=whole)
    return ProgressLines(iterable, desc, total, passes_after=passes_after, whole=whole)
