"""PyTorch policies with the ONNX model contract's signature: [B, 20, 25] -> [B, 1].

The seed architecture is the one the design inherits (about 66k parameters). The
residual variant learns a correction on top of the PD-suggestion feature and fades it
out at large heading errors, where imitation data is thin and PD is known to be safe.
"""

import torch
from torch import nn

from autopilot_ros.features import INDEX, NUM_FEATURES, SCALES, WINDOW_LENGTH


class SeedLSTM(nn.Module):
    """Linear 25->128 + ReLU, BatchNorm over the 20 steps, LSTM 128->64, LSTM 64->32,
    Linear 32->16 + LeakyReLU, Linear 16->1 + Tanh."""

    def __init__(self, features: int = NUM_FEATURES, window: int = WINDOW_LENGTH) -> None:
        super().__init__()
        self.inp = nn.Linear(features, 128)
        self.norm = nn.BatchNorm1d(window)
        self.lstm1 = nn.LSTM(128, 64, batch_first=True)
        self.lstm2 = nn.LSTM(64, 32, batch_first=True)
        self.head = nn.Linear(32, 16)
        self.out = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(torch.relu(self.inp(x)))
        y, _ = self.lstm1(y)
        y, _ = self.lstm2(y)
        y = nn.functional.leaky_relu(self.head(y[:, -1]))
        return torch.tanh(self.out(y))


class SmallLSTM(nn.Module):
    """A lighter option: Linear 25->32 + ReLU, LSTM 32->32, Linear 32->1 + Tanh."""

    def __init__(self, features: int = NUM_FEATURES) -> None:
        super().__init__()
        self.inp = nn.Linear(features, 32)
        self.lstm = nn.LSTM(32, 32, batch_first=True)
        self.out = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(torch.relu(self.inp(x)))
        return torch.tanh(self.out(y[:, -1]))


class ResidualPolicy(nn.Module):
    """command = clamp(pd_suggestion + gate(error) * 0.5 * body(x), -1, 1).

    The gate is 1 near the course and falls to 0 beyond `fade_error` rad of heading
    error, so far off course the PD suggestion (a feature of the spec) steers alone.
    """

    def __init__(self, body: nn.Module, fade_error: float = 0.5) -> None:
        super().__init__()
        self.body = body
        self.fade_error = fade_error
        self.pd_index = INDEX['pd_suggestion']
        self.err_index = INDEX['heading_error']
        self.err_scale = float(SCALES[self.err_index])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x[:, -1]
        pd = last[:, self.pd_index:self.pd_index + 1]
        err = last[:, self.err_index:self.err_index + 1] / self.err_scale
        gate = torch.clamp(1.0 - torch.abs(err) / self.fade_error, 0.0, 1.0)
        return torch.clamp(pd + gate * 0.5 * self.body(x), -1.0, 1.0)


ARCHITECTURES = {'seed': SeedLSTM, 'small': SmallLSTM}


def build_model(arch: str = 'seed', residual: bool = True) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{arch}', choose from {sorted(ARCHITECTURES)}")
    body = ARCHITECTURES[arch]()
    return ResidualPolicy(body) if residual else body


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
