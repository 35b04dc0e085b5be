"""Intervals and paired verdicts (report/stats.py, report/compare.py)."""

import json

import numpy as np
import pytest

from robustprompt.report.stats import Cell, compare, interval, mcnemar_p, verdict, wilson_interval


def _seeded_world(rng, S, N, p, seed_sd):
    """Test images with a latent difficulty u; seed s gets image i right when u_i < p_s: the seeds
    share the images (as real runs do), and the expected accuracy over images and seeds is p."""
    u = rng.random(N)
    ps = p + rng.normal(0, seed_sd, S)
    return u, u[None, :] < ps[:, None]


def test_intervals_cover_the_known_value_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    sims, covered, covered_diff = 150, 0, 0
    for r in range(sims):
        u, a = _seeded_world(rng, 3, 400, 0.7, 0.02)
        e = interval([Cell({"all": a})], n_boot=500, seed=r)
        covered += e.low <= 0.7 <= e.high
        # B: the same images, 5 points worse in expectation (paired through u)
        b = u[None, :] < (0.65 + rng.normal(0, 0.02, 3))[:, None]
        c = compare([(Cell({"all": a}), Cell({"all": b}))], n_boot=500, seed=r)
        covered_diff += c.low <= 0.05 <= c.high
    assert 0.90 <= covered / sims <= 0.99, covered / sims
    assert 0.90 <= covered_diff / sims <= 0.99, covered_diff / sims


def test_wilson_interval_covers_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    n, p, sims = 200, 0.3, 2000
    ks = rng.binomial(n, p, sims)
    cover = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(k, n) for k in ks)])
    assert 0.93 <= cover <= 0.97, cover


def test_paired_comparison_agrees_with_a_hand_computation():
    a = np.array([[1, 1, 1, 1, 1, 0]], dtype=bool)  # one seed, six images
    b = np.array([[0, 0, 0, 0, 1, 0]], dtype=bool)
    c = compare([(Cell({"all": a}), Cell({"all": b}))], n_boot=40000, seed=0)
    assert (c.a, c.b, c.diff) == (pytest.approx(5 / 6), pytest.approx(1 / 6), pytest.approx(4 / 6))
    # by hand: d = A - B per image = (1, 1, 1, 1, 0, 0); resampling the six images, the mean of d has
    # standard error sqrt((2/3)(1/3) / 6) = 0.19245; one seed, so no seed part: 2/3 +- 1.95996 * 0.19245
    se = np.sqrt((2 / 3) * (1 / 3) / 6)
    assert c.se_seeds == 0 and c.se_images == pytest.approx(se, rel=0.02)
    assert c.low == pytest.approx(2 / 3 - 1.959964 * se, abs=0.01)
    assert 2 / 3 + 1.959964 * se > 1 and c.high == 1.0  # a difference of accuracies is at most 1: clipped
    assert c.verdict == "established"
    assert mcnemar_p(a[0], b[0]) == pytest.approx(0.125)  # 4 discordant, all for A: 2 * (1/2)^4
    assert c.mcnemar_p == pytest.approx(0.125)
    assert verdict(0.01, 0.2) == "established" and verdict(-0.2, -0.01) == "refuted"
    assert verdict(-0.01, 0.2) == "not established"


def test_memoised_resampling_draws_what_one_fresh_generator_draws():
    """The image resamplings are memoised across comparisons; each comparison must still see exactly
    the draws of one default_rng(seed) walking its datasets and image sets in order."""
    from robustprompt.report import stats

    rng = np.random.default_rng(3)
    def cell(n_base, n_novel):
        return Cell({"base": rng.random((2, n_base)) < 0.6, "novel": rng.random((2, n_novel)) < 0.4,
                     "base@noise": rng.random((2, n_base)) < 0.5})
    pairs = [(cell(30, 20), cell(30, 20)), (cell(25, 25), cell(25, 25))]

    def by_hand(kind):  # the draws as one fresh generator makes them (the code before memoising)
        g, out = np.random.default_rng(7), [[], []]
        for cells in pairs:
            w = {}
            for split in ("base", "novel"):
                n = cells[0].splits[split].shape[1]
                x = g.multinomial(n, np.full(n, 1.0 / n), size=300).astype(np.float64)
                x[0] = 1.0
                w[split] = x / n
            w["base@noise"] = w["base"]
            for j, c in enumerate(cells):
                accs = {s: w[s] @ m.T.astype(np.float64) for s, m in c.splits.items()}
                out[j].append(stats._per_seed(accs, kind))
        return out

    stats._resample_counts.cache_clear()
    for kind in ("hm", "acc", "hm", "acc"):  # the second pass is served from the memo
        got = stats._image_replicates(pairs, kind, 300, 7)
        for mine, ref in zip(got, by_hand(kind)):
            for x, y in zip(mine, ref):
                np.testing.assert_array_equal(x, y)
    # a shorter walk is a prefix of the longer one; another seed is another stream
    first = stats._image_replicates(pairs[:1], "acc", 300, 7)[0][0]
    np.testing.assert_array_equal(first, stats._image_replicates(pairs, "acc", 300, 7)[0][0])
    assert not np.array_equal(first, stats._image_replicates(pairs[:1], "acc", 300, 8)[0][0])


def test_seed_spread_widens_the_interval_with_students_t():
    """Three seeds that disagree: Student's t with Welch-Satterthwaite degrees of freedom (2 when the
    seeds' spread is all there is, more as the images' share grows)."""
    from scipy.stats import t

    u = np.linspace(0, 1, 1000, endpoint=False)
    a = u[None, :] < np.array([0.70, 0.74, 0.78])[:, None]
    b = u[None, :] < np.array([0.70, 0.70, 0.70])[:, None]
    c = compare([(Cell({"all": a}), Cell({"all": b}))], n_boot=2000, seed=0)
    per_seed = np.array([0.0, 0.04, 0.08])
    assert c.diff == pytest.approx(0.04) and c.se_seeds == pytest.approx(per_seed.std(ddof=1) / np.sqrt(3))
    total = c.se_seeds**2 + c.se_images**2
    df = total**2 / (c.se_seeds**4 / 2)
    assert 2 < df < 3  # the seeds dominate here
    half = t.ppf(0.975, df) * np.sqrt(total)
    assert (c.low, c.high) == (pytest.approx(0.04 - half), pytest.approx(0.04 + half))
    assert c.verdict == "not established"  # +4 points, but three seeds this far apart cannot say


def test_one_run_and_degenerate_cells_get_wilson_intervals():
    none_right = np.zeros((1, 20), dtype=bool)  # e.g. AutoAttack breaks all 20 images
    e = interval([Cell({"all": none_right})])
    assert e.value == 0 and e.low == 0 and e.high == pytest.approx(wilson_interval(0, 20)[1])
    assert 0.15 < e.high < 0.17  # 0 of 20 is not proof of 0%
    all_right = np.ones((3, 20), dtype=bool)  # three seeds, every image right
    e = interval([Cell({"all": all_right})])
    assert e.high == 1 and e.low == pytest.approx(wilson_interval(60, 60)[0])


def test_verdict_flips_when_the_data_flip():
    rng = np.random.default_rng(2)
    u = rng.random((3, 600))
    better, worse = u < 0.8, u < 0.6
    pairs = lambda x, y: [(Cell({"all": x}), Cell({"all": y}))]  # noqa: E731
    assert compare(pairs(better, worse), n_boot=1000).verdict == "established"
    assert compare(pairs(worse, better), n_boot=1000).verdict == "refuted"
    assert compare(pairs(better, better), n_boot=1000).verdict == "not established"


def test_hm_statistic_is_the_mean_over_seeds_of_the_harmonic_mean():
    base = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool)  # seeds: 0.5, 0.75
    novel = np.array([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)  # seeds: 0.25, 0.5
    e = interval([Cell({"base": base, "novel": novel})], kind="hm", n_boot=10)
    hm = lambda x, y: 2 * x * y / (x + y)  # noqa: E731
    assert e.value == pytest.approx((hm(0.5, 0.25) + hm(0.75, 0.5)) / 2)


# ---- end to end: per-image results in results.json, report --compare


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory):
    from helpers import TINY_ARGS, make_imagefolder

    from robustprompt.cli import main

    root = tmp_path_factory.mktemp("cmp")
    tree = make_imagefolder(root / "colours", n_per_class=30)
    i = TINY_ARGS.index("method_cfg.n_ctx=4")
    common = TINY_ARGS[: i - 1] + TINY_ARGS[i + 1 :]  # zeroshot has no n_ctx
    for method, extra in (("coop", ["--set", "method_cfg.n_ctx=4"]), ("zeroshot", [])):
        for seed in (1, 2):
            assert main(["train", "--method", method, "--dataset", "imagefolder", "--data-root", str(tree),
                         "--out", str(root / "runs" / f"{method}-{seed}"), "--seed", str(seed), *common,
                         *extra]) == 0
    return root / "runs"


def test_results_keep_per_image_correctness(two_methods):
    rec = json.loads((two_methods / "coop-1" / "results.json").read_text())["evaluations"][0]
    assert len(rec["correct"]) == rec["n"] and set(rec["correct"]) <= {"0", "1"}
    assert rec["correct"].count("1") == round(rec["value"] * rec["n"])
    other = json.loads((two_methods / "zeroshot-2" / "results.json").read_text())["evaluations"][0]
    assert rec["items_sha256"] == other["items_sha256"]  # the same test images: pairable


def test_report_compare_prints_and_renders(two_methods, tmp_path, capsys):
    from robustprompt.cli import main

    from helpers import fails

    capsys.readouterr()
    assert main(["report", str(two_methods), "--out", str(tmp_path / "rep"), "--no-plots",
                 "--compare", "coop,zeroshot"]) == 0
    out = capsys.readouterr().out
    assert "coop against zeroshot (paired; claim: coop > zeroshot)" in out
    row = next(line for line in out.splitlines() if line.startswith("imagefolder"))
    assert any(v in row for v in ("established", "refuted", "not established")) and "[" in row
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "coop against zeroshot (paired)" in html and "95% CI" in html
    assert "coop - zeroshot [95% CI]" in (tmp_path / "rep" / "report.md").read_text()
    fails(capsys, ["report", str(two_methods), "--out", str(tmp_path / "r2"), "--compare", "coop"], "two different")
    fails(capsys, ["report", str(two_methods), "--out", str(tmp_path / "r3"), "--compare", "coop,maple"],
          "no runs of 'maple'")


def test_change_under_noise_is_paired_per_image_and_agrees_with_a_hand_computation():
    """The accuracy change under a noise (right under the noise minus right without it, per image) of A
    against B's; for HM the clean and noisy splits are resampled together (the same images)."""
    clean_a = np.array([[1, 1, 1, 1, 0, 0]], dtype=bool)
    noisy_a = np.array([[1, 1, 1, 0, 0, 0]], dtype=bool)  # A loses one image of six
    clean_b = np.array([[1, 1, 1, 1, 1, 0]], dtype=bool)
    noisy_b = np.array([[1, 0, 0, 0, 1, 0]], dtype=bool)  # B loses three
    cells = (Cell({"all": noisy_a.astype(np.int8) - clean_a}), Cell({"all": noisy_b.astype(np.int8) - clean_b}))
    c = compare([cells], n_boot=40000, seed=0)
    assert (c.a, c.b, c.diff) == (pytest.approx(-1 / 6), pytest.approx(-3 / 6), pytest.approx(2 / 6))
    # per image d = change_A - change_B = (0, 1, 1, 0, 0, 0): standard error sqrt((1/3)(2/3) / 6)
    assert c.se_images == pytest.approx(np.sqrt((1 / 3) * (2 / 3) / 6), rel=0.02)
    assert c.mcnemar_p is None and c.n_images == 6  # not right / wrong per image: no McNemar
    hm = compare([tuple(Cell({"base": n, "novel": n, "base@clean": k, "novel@clean": k}) for n, k in
                        ((noisy_a, clean_a), (noisy_b, clean_b)))], "hm_change", n_boot=2000, seed=0)
    # base = novel, so each HM is the accuracy itself: the same values as above
    assert (hm.a, hm.b, hm.diff) == (pytest.approx(-1 / 6), pytest.approx(-3 / 6), pytest.approx(2 / 6))
    assert hm.n_images == 12  # base and novel, not their clean copies


def test_compare_rows_include_the_change_under_each_noise(tmp_path):
    from test_report import rec, write_run

    from robustprompt.report.collect import collect
    from robustprompt.report.compare import comparison_rows

    def bits(flags):
        return "".join("1" if f else "0" for f in flags)

    rng = np.random.default_rng(0)
    root = tmp_path / "runs"
    for seed in (1, 2):
        for method, p_drop in (("a", 0.0), ("b", 0.3)):
            records = []
            for split in ("base", "novel"):
                clean = rng.random(300) < 0.8
                noisy = clean & (rng.random(300) >= p_drop)
                for metric, flags, extra in (("clean_acc", clean, {}), ("noise_acc", noisy, {"noise": "blur:1"})):
                    records.append(rec("d1", split, metric, flags.mean(), n=300, correct=bits(flags),
                                       items_sha256=f"d1-{split}", **extra))
            write_run(root, method, "d1", seed, records)
    rows, notes = comparison_rows(collect([root]).runs, "a", "b", n_boot=500)
    by = {(r.evaluation, r.split): r.result for r in rows}
    assert not notes
    assert ("noise_change noise=blur:1", "HM") in by and ("noise_change noise=blur:1", "base") in by
    change = by[("noise_change noise=blur:1", "base")]
    assert change.a == 0.0 and change.b == pytest.approx(-0.24, abs=0.04)  # B loses 30% of 80%
    assert by[("noise_change noise=blur:1", "HM")].verdict == "established"  # A drops less than B


def test_an_average_pairs_only_the_seeds_every_dataset_has(tmp_path):
    """A seed run on one dataset only must not enter the average: not as a seed, not as a weight."""
    from test_report import rec, write_run

    from robustprompt.report.collect import collect
    from robustprompt.report.compare import comparison_rows

    def bits(flags):
        return "".join("1" if f else "0" for f in flags)

    rng = np.random.default_rng(0)
    root = tmp_path / "runs"
    for ds, seeds in (("d1", (1, 2, 3)), ("d2", (1, 2))):
        for seed in seeds:
            for method in ("a", "b"):
                # seed 3 (d1 only) has A far below B; seeds 1 and 2 have A well above B
                p = {"a": 0.1 if seed == 3 else 0.9, "b": 0.5}[method]
                flags = rng.random(200) < p
                write_run(root, method, ds, seed, [rec(ds, "all", "clean_acc", flags.mean(), n=200,
                                                       correct=bits(flags), items_sha256=f"{ds}-all")])
    rows, notes = comparison_rows(collect([root]).runs, "a", "b", n_boot=500)
    by = {r.scope: r.result for r in rows if r.split == "all"}
    assert by["d1"].n_seeds == 3 and by["d2"].n_seeds == 2  # per dataset every seed counts
    avg = by["average of 2"]
    assert avg.n_seeds == 2 and avg.n_images == 400
    assert avg.verdict == "established" and avg.diff == pytest.approx(0.4, abs=0.05)
    assert any("seed(s) 3 left out" in n for n in notes)
