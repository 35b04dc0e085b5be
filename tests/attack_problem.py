"""The toy problem the attack tests share: noisy copies of class prototypes, 8 px, and a small MLP."""

import torch
import torch.nn as nn

H = 8
C = 10


def make_data(n, n_classes=C, seed=0):
    """Noisy copies of fixed random class prototypes, in [0, 1]."""
    protos = 0.375 + 0.25 * torch.rand(n_classes, 3, H, H,
                                       generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    x = (protos[y] + 0.08 * torch.randn(n, 3, H, H, generator=g)).clamp(0, 1)
    return x, y


def mlp(n_classes, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * H * H, 32), nn.ReLU(), nn.Linear(32, n_classes))


def trained_mlp(test_seed: int):
    """(model, test images, test labels): an MLP trained for ~1 s, clean accuracy ~1."""
    m = mlp(C)
    x, y = make_data(512, seed=0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for i in range(80):
        idx = torch.randint(0, 512, (64,), generator=torch.Generator().manual_seed(i))
        loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    m.zero_grad(set_to_none=True)
    xt, yt = make_data(32, seed=test_seed)
    return m, xt, yt


def acc(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
