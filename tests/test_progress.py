"""Progress without a terminal: a line now and then with the count and the time left."""

import io

from robustprompt.engine.progress import ProgressLines


def test_progress_lines_report_count_and_time_left(monkeypatch):
    import robustprompt.engine.progress as prog

    clock = iter(float(t) for t in range(0, 1000, 10))  # each item takes 10 s
    monkeypatch.setattr(prog.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = ProgressLines(range(7), desc="pgd_acc", every=25, stream=out)
    bar.set_postfix(loss="0.5")
    assert list(bar) == list(range(7))
    lines = out.getvalue().splitlines()
    assert lines == ["robustprompt: pgd_acc: 3/7 (43%), 0:30 elapsed, about 0:40 left, loss 0.5",
                     "robustprompt: pgd_acc: 6/7 (86%), 1:00 elapsed, about 0:10 left, loss 0.5"]


def test_a_short_loop_prints_nothing():
    out = io.StringIO()
    assert list(ProgressLines([1, 2, 3], desc="x", every=3600, stream=out)) == [1, 2, 3]
    assert out.getvalue() == ""
