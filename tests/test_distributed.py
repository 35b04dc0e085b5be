"""Training across processes (torchrun, gloo on CPU) matches one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as td
from safetensors.torch import load_file

from robustprompt.engine.distributed import Dist, backend_for
from robustprompt.engine.seeding import derive_seed
from robustprompt.errors import ConfigError

from helpers import make_imagefolder

pytestmark = pytest.mark.skipif(not td.is_available() or not td.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.mark.parametrize("n, batch, world", [(16, 4, 2), (20, 8, 4), (12, 6, 3), (5, 4, 1)])
def test_sampler_deals_out_the_single_process_batches(n, batch, world):
    data = list(range(n))
    for epoch in range(2):
        seed = derive_seed(1, "order", epoch)
        single = [b.tolist() for b in Dist().loader(data, batch, seed)]
        ranks = [[b.tolist() for b in Dist(rank=r, world_size=world).loader(data, batch, seed)] for r in range(world)]
        assert all(len(r) == len(single) for r in ranks)
        for k, global_batch in enumerate(single):
            parts = [r[k] for r in ranks]
            assert sorted(sum(parts, [])) == sorted(global_batch)  # global batch k = single-process batch k
            assert len({len(p) for p in parts}) == 1  # equal shares: DDP's mean of means is the global mean


def test_global_batch_must_split_over_the_processes():
    assert Dist(rank=1, world_size=4).local_batch_size(32) == 8
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        Dist(rank=0, world_size=3).local_batch_size(32)


def test_backend_follows_the_device():
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("data") / "colours")


# ivlp: DDP over vision and text prompts, images through the tower every step;
# coop: the text-only path with the image-feature cache computed in shards and gathered.
@pytest.mark.parametrize("method, extra", [
    ("ivlp", []),
    ("coop", ["--set", "train.cache_image_features=true", "--set", "method_cfg.n_ctx=4"]),
])
@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tree, tmp_path, method, extra):
    # 16 training images (4 classes x 4 shots), global batch 4 = 2 per process, no augmentation: every
    # global batch holds the same images as the single-process batch, so only float rounding differs.
    args = ["--method", method, "--dataset", "imagefolder", "--data-root", str(tree), "--model", "robustprompt-test",
            "--pretrained", "random", "--epochs", "3", "--batch-size", "4", "--shots", "4", "--split", "all",
            "--set", "data.train_augment=false", "--set", "train.eval_batch_size=8", "--set", "train.warmup_epochs=0",
            "--set", "train.lr=0.01", *extra]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           "-m", "robustprompt", "train", *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run written to") == 1  # rank 0 reports

    from robustprompt.cli import main

    assert main(["train", *args, "--out", str(tmp_path / "one")]) == 0
    a = load_file(str(out / "prompt.safetensors"))
    b = load_file(str(tmp_path / "one" / "prompt.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    ra = json.loads((out / "results.json").read_text())
    rb = json.loads((tmp_path / "one" / "results.json").read_text())
    assert [(r["metric"], r["value"], r["n"]) for r in ra["evaluations"]] == \
           [(r["metric"], r["value"], r["n"]) for r in rb["evaluations"]]
    assert ra["train"]["final_loss"] == pytest.approx(rb["train"]["final_loss"], rel=1e-5)
    # only rank 0 wrote: the same files, each log line once
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    log = (out / "log.txt").read_text()
    assert log.count("epoch 1/3") == 1 and log.count("test all") == 1
    assert ("cached the training features of 16 images" in log) == (method == "coop")


def test_loader_workers_serve_the_same_batches(tree):
    """data.num_workers > 0 (forked workers) deals the same batches as loading in the main process."""
    from robustprompt.data import ImageDataset, prepare_dataset
    from robustprompt.data.transforms import eval_transform

    data = prepare_dataset("imagefolder", str(tree), shots=4, seed=1, split="all")
    ds = ImageDataset(data.train, eval_transform(16), data.images)
    seed = derive_seed(1, "order", 0)
    main = list(Dist().loader(ds, 4, seed, num_workers=0))
    forked = list(Dist().loader(ds, 4, seed, num_workers=2))
    assert len(main) == len(forked) == 4
    for (xa, ya), (xb, yb) in zip(main, forked):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
