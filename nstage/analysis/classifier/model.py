"""The station network (v2): each station read at its node and in its context, then in the patient's context.

Inputs, per study, 17 station slots (label - 1 in atlas/stations.json order):
  node     (B, 17, 3, n, n, n)  CT / SUV / station mask on a fine cube around the index node
  context  (B, 17, 3, m, m, m)  the same channels on a coarse cube around the whole station
  features (B, 17, F)           the measured figures (features.STATION_FEATURES)
  patient  (B, P)               tumour and blood pool (features.PATIENT_FEATURES)
  present  (B, 17)              1 where the station is in the study's map, 0 for empty slots
Output: (B, 17) logits (calibrated: `calibration` scales and shifts them after training).

Each station becomes a token from two small 3D CNNs (MONAI convolution blocks), a feature MLP
and a station embedding. The logit is the sum of
  - an uptake prior: a learned linear function of the station SUVmax, initialised to the SUVmax
    reading rule (logit 0 at `prior_suv_threshold`, `prior_slope_per_suv` per SUV unit),
  - a per-station bias,
  - a linear function of the measured features (a logistic reader; starts at zero),
  - a station head on the token (last layer starts at zero),
  - (`patches` false: the measurements-only variant, no image path, for comparison)
  - with `patient_context`, a head on the token after one attention step over the other
    stations' tokens and a tumour token (last layer starts at zero), so a station's score can
    see bilateral symmetric uptake or the tumour's drainage.
Training therefore starts at the SUVmax rule and learns what nodes, CT and context add.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.networks.blocks import Convolution
from torch import nn


class PatchEncoder(nn.Module):
    """Strided 3D convolutions, pooled by mean and by maximum: (N, 3, d, d, d) -> (N, 2 * channels[-1])."""

    def __init__(self, channels: tuple[int, ...], in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels + 1  # + SUV inside the station mask
        for c in channels:
            layers.append(Convolution(3, c_in, c, strides=2, kernel_size=3, act="PRELU", norm="INSTANCE"))
            layers.append(Convolution(3, c, c, strides=1, kernel_size=3, act="PRELU", norm="INSTANCE"))
            c_in = c
        self.layers = nn.Sequential(*layers)
        self.out_dim = 2 * c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.layers(torch.cat([x, x[:, 1:2] * x[:, 2:3]], dim=1))
        return torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4))], dim=1)


def _zero_last(head: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


class StationNet(nn.Module):
    def __init__(self, n_features: int, n_patient: int, n_stations: int = 17, node_channels: tuple[int, ...] = (8, 16, 32),
                 context_channels: tuple[int, ...] = (8, 16), embedding_dim: int = 8, hidden: int = 32, dropout: float = 0.1,
                 patient_context: bool = True, prior_suv_threshold: float = 2.5, prior_slope_per_suv: float = 2.0,
                 patches: bool = True) -> None:
        super().__init__()
        self.n_stations, self.patient_context, self.hidden, self.patches = n_stations, patient_context, hidden, patches
        self.node_encoder = PatchEncoder(node_channels)
        self.context_encoder = PatchEncoder(context_channels)
        self.features = nn.Sequential(nn.Linear(n_features, hidden), nn.PReLU())
        self.embed = nn.Embedding(n_stations, embedding_dim)
        self.station_bias = nn.Embedding(n_stations, 1)
        nn.init.zeros_(self.station_bias.weight)
        n_in = self.node_encoder.out_dim + self.context_encoder.out_dim + hidden + embedding_dim
        self.token = nn.Sequential(nn.Linear(n_in, hidden), nn.PReLU(), nn.Dropout(dropout), nn.LayerNorm(hidden))
        self.head = _zero_last(nn.Sequential(nn.Linear(hidden, hidden), nn.PReLU(), nn.Linear(hidden, 1)))
        self.tumour = nn.Sequential(nn.Linear(n_patient, hidden), nn.PReLU(), nn.LayerNorm(hidden))
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.context_head = _zero_last(nn.Sequential(nn.Linear(2 * hidden, hidden), nn.PReLU(), nn.Linear(hidden, 1)))
        self.linear = nn.Linear(n_features, 1)  # a logistic reader of the measurements, learnt first (starts at zero)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.uptake = nn.Linear(1, 1)  # on the station SUVmax
        with torch.no_grad():
            self.uptake.weight.fill_(prior_slope_per_suv)
            self.uptake.bias.fill_(-prior_slope_per_suv * prior_suv_threshold)
        self.register_buffer("calibration", torch.tensor([1.0, 0.0]))  # logit -> a * logit + b (set after training)

    def raw_logits(self, node: torch.Tensor, context: torch.Tensor, features: torch.Tensor, patient: torch.Tensor,
                   present: torch.Tensor) -> torch.Tensor:
        """(B, 17) logits before calibration."""
        b, s = features.shape[0], features.shape[1]
        if self.patches:
            enc_n = self.node_encoder(node.flatten(0, 1)).view(b, s, -1)
            enc_c = self.context_encoder(context.flatten(0, 1)).view(b, s, -1)
        else:  # the measurements-only variant: no image path
            enc_n = features.new_zeros(b, s, self.node_encoder.out_dim)
            enc_c = features.new_zeros(b, s, self.context_encoder.out_dim)
        ids = torch.arange(s, device=features.device)
        emb = self.embed(ids).unsqueeze(0).expand(b, -1, -1)
        tok = self.token(torch.cat([enc_n, enc_c, self.features(features), emb], dim=2))
        suv_max = torch.expm1(features[..., 0:1])  # feature 0 is log1p(station SUVmax)
        logit = (self.uptake(suv_max) + self.linear(features)).squeeze(2) + self.station_bias(ids).squeeze(1).unsqueeze(0) \
            + self.head(tok).squeeze(2)
        if self.patient_context:
            t = self.tumour(patient).unsqueeze(1)  # (B, 1, H)
            keys = torch.cat([tok, t], dim=1)
            seen = torch.cat([present > 0.5, torch.ones(b, 1, dtype=torch.bool, device=present.device)], dim=1)
            att = torch.einsum("bsh,bth->bst", self.query(tok), self.key(keys)) / math.sqrt(self.hidden)
            att = att.masked_fill(~seen.unsqueeze(1), -1e4).softmax(dim=2)
            ctx = torch.einsum("bst,bth->bsh", att, self.value(keys))
            logit = logit + self.context_head(torch.cat([tok, ctx], dim=2)).squeeze(2)
        return logit

    def forward(self, node: torch.Tensor, context: torch.Tensor, features: torch.Tensor, patient: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        return self.calibration[0] * self.raw_logits(node, context, features, patient, present) + self.calibration[1]


def build_model(model_cfg: dict[str, Any], n_features: int, n_patient: int, n_stations: int = 17) -> StationNet:
    """The network of a config's "model" section."""
    return StationNet(n_features, n_patient, n_stations, tuple(int(c) for c in model_cfg["node_channels"]),
                      tuple(int(c) for c in model_cfg["context_channels"]), int(model_cfg["embedding_dim"]),
                      int(model_cfg["hidden"]), float(model_cfg["dropout"]), bool(model_cfg["patient_context"]),
                      float(model_cfg.get("prior_suv_threshold", 2.5)), float(model_cfg.get("prior_slope_per_suv", 2.0)),
                      bool(model_cfg.get("patches", True)))


class StationEnsemble(nn.Module):
    """Several trained station networks read as one: the mean of their calibrated probabilities, returned as a
    logit so that the slot interface (forward -> (B, 17) logits, sigmoid for probabilities) stays the same."""

    def __init__(self, members: list[StationNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, node: torch.Tensor, context: torch.Tensor, features: torch.Tensor, patient: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        z = torch.stack([m(node, context, features, patient, present) for m in self.members])  # (K, B, 17)
        log_k = math.log(len(self.members))
        log_p = torch.logsumexp(nn.functional.logsigmoid(z), dim=0) - log_k  # log of the mean probability
        log_q = torch.logsumexp(nn.functional.logsigmoid(-z), dim=0) - log_k  # log of one minus it
        return log_p - log_q
