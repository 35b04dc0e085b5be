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


def test_an_epoch_also_reports_the_time_to_the_end_of_training(monkeypatch):
    import robustprompt.engine.progress as prog

    clock = iter(float(t) for t in range(0, 1000, 10))  # each step takes 10 s; 4 steps per epoch
    monkeypatch.setattr(prog.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = ProgressLines(range(4), desc="epoch 3/5", every=15, stream=out, passes_after=2, whole="training")
    assert list(bar) == list(range(4))
    # after 2 of 4 steps: 20 s left in this epoch, then 2 epochs of 40 s
    assert out.getvalue().splitlines()[0] == ("robustprompt: epoch 3/5: 2/4 (50%), 0:20 elapsed, about 0:20 left "
                                             "(training: about 1:40)")


def test_the_terminal_bar_shows_the_time_to_the_end_of_training(monkeypatch):
    from robustprompt.engine.progress import _Bar

    bar = _Bar(range(4), total=4, passes_after=2, whole="training", file=io.StringIO())
    now = bar.start_t + 20.0
    monkeypatch.setattr(bar, "_time", lambda: now)
    bar.n = 2
    bar.set_postfix(loss="0.5")
    assert bar.postfix == "loss=0.5, training=~1:40 left"
    bar.close()


def test_an_item_longer_than_the_interval_still_gets_lines():
    """One attacked batch can take many minutes: lines keep coming while it runs, and stop with the loop."""
    import time

    def slow_batches():
        for i in range(2):
            time.sleep(0.5)
            yield i

    out = io.StringIO()
    assert list(ProgressLines(slow_batches(), desc="autoattack_acc", total=2, every=0.1, stream=out)) == [0, 1]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("robustprompt: autoattack_acc: 0/2 (0%), 0:00 elapsed")
    assert "left" not in lines[0]  # nothing finished yet: no estimate
    assert any(line.startswith("robustprompt: autoattack_acc: 1/2 (50%)") and "about 0:0" in line for line in lines)
    time.sleep(0.3)
    assert out.getvalue().splitlines() == lines  # the timer ended with the loop
