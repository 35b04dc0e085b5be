
import pytest
import torch

# one thread: the tests' tensors are tiny, and threads only add contention on a shared 2-core machine
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_backbone():
    """The tiny random test architecture (robustprompt-test): fast, for mechanics only."""
    from robustprompt.backbone import load_backbone

    torch.manual_seed(0)
    return load_backbone("robustprompt-test", "random")


@pytest.fixture
def full_text_path(tiny_backbone):
    """The tiny backbone with every class prompt run in full (no shared prefix): for tests that compare
    two methods bit for bit when only one of them can share its prefix (text refiners stop sharing)."""
    tiny_backbone.share_text_prefix = False
    yield tiny_backbone
    tiny_backbone.share_text_prefix = True
