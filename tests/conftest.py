import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_backbone():
    """The tiny random test architecture (robustprompt-test): fast, for mechanics only."""
    from robustprompt.backbone import load_backbone

    torch.manual_seed(0)
    return load_backbone("robustprompt-test", "random")
