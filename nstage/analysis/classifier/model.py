"""The station network: a small 3D CNN on MONAI convolution blocks, with the station identity as input.

Input: patches ``(N, 3, D, D, D)`` (CT, SUV, station mask) and station indices ``(N,)`` (label - 1 in
atlas/stations.json order). Output: one logit per patch (malignant vs benign).

Inside the network the SUV restricted to the station mask is added as a fourth channel: a patch
around a small station also holds the heart, the tumour and other stations, whose uptake must not
be mistaken for the station's. The logit is the sum of
  - an uptake path: a learned linear function of the maximum masked SUV, initialised to the
    SUVmax reading rule (logit 0 at `prior_suv_threshold`, `prior_slope_per_suv` per SUV unit),
  - a per-station bias (learned),
  - a CNN path: convolution features pooled by mean and by maximum (a hot node is a local maximum)
    with a station embedding, through a small head whose last layer starts at zero.
So training starts from the uptake rule and learns what the images add (size, shape, CT density,
station context); with few cases this converges where a CNN from scratch does not.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.blocks import Convolution
from torch import nn


class StationNet(nn.Module):
    def __init__(self, n_stations: int = 17, in_channels: int = 3, channels: tuple[int, ...] = (8, 16, 32),
                 embedding_dim: int = 8, dropout: float = 0.1, suv_range: tuple[float, float] = (0.0, 10.0),
                 prior_suv_threshold: float = 2.5, prior_slope_per_suv: float = 2.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels + 1  # + SUV inside the station mask
        for c in channels:  # each level: strided conv (halves the size), then a conv at that size
            layers.append(Convolution(3, c_in, c, strides=2, kernel_size=3, act="PRELU", norm="INSTANCE"))
            layers.append(Convolution(3, c, c, strides=1, kernel_size=3, act="PRELU", norm="INSTANCE"))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.embed = nn.Embedding(n_stations, embedding_dim)
        self.station_bias = nn.Embedding(n_stations, 1)
        nn.init.zeros_(self.station_bias.weight)
        n_pooled = 2 * c_in + 1 + embedding_dim
        self.head = nn.Sequential(nn.Linear(n_pooled, 32), nn.PReLU(), nn.Dropout(dropout), nn.Linear(32, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        lo, hi = suv_range
        self.uptake = nn.Linear(1, 1)  # on the scaled masked SUVmax (0..1 over suv_range)
        with torch.no_grad():
            self.uptake.weight.fill_(prior_slope_per_suv * (hi - lo))
            self.uptake.bias.fill_(-prior_slope_per_suv * (prior_suv_threshold - lo))

    def forward(self, x: torch.Tensor, station: torch.Tensor) -> torch.Tensor:
        masked = x[:, 1:2] * x[:, 2:3]
        peak = masked.amax(dim=(2, 3, 4))
        f = self.features(torch.cat([x, masked], dim=1))
        pooled = torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4)), peak, self.embed(station)], dim=1)
        return (self.uptake(peak) + self.station_bias(station) + self.head(pooled)).squeeze(1)


def build_model(model_cfg: dict[str, Any], n_stations: int = 17, suv_range: tuple[float, float] = (0.0, 10.0)) -> StationNet:
    """The network of a config's "model" section (suv_range from its "patch" section)."""
    return StationNet(n_stations, 3, tuple(int(c) for c in model_cfg["channels"]), int(model_cfg["embedding_dim"]),
                      float(model_cfg["dropout"]), (float(suv_range[0]), float(suv_range[1])),
                      float(model_cfg.get("prior_suv_threshold", 2.5)), float(model_cfg.get("prior_slope_per_suv", 2.0)))
