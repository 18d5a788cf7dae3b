"""The server's step from one round's averaged weights to the next global weights (FedOpt's server side).

FedAvg takes the sites' weighted mean as the next global weights. FedAvgM (Hsu et al. 2019, "Measuring the
effects of non-identical data distribution for federated visual classification") and FedOpt (Reddi et al., ICLR
2021) treat the change the round proposes, global - mean, as a gradient and give it to a server optimiser; here
PyTorch's SGD with momentum, as NVFlare's FedOpt does with its server optimiser. With lr 1 and momentum 0 the step
is FedAvg's mean itself, and then no optimiser runs at all (the mean is returned as it is, bit for bit).
"""

from __future__ import annotations

import numpy as np
import torch

Weights = dict[str, np.ndarray]


class ServerOptimizer:
    """One SGD optimiser per ensemble member over its floating-point weights (float64 on the server)."""

    def __init__(self, lr: float = 1.0, momentum: float = 0.0) -> None:
        self.lr, self.momentum = float(lr), float(momentum)
        self._params: dict[int, dict[str, torch.Tensor]] = {}
        self._optimisers: dict[int, torch.optim.SGD] = {}

    @property
    def is_fedavg(self) -> bool:
        return self.lr == 1.0 and self.momentum == 0.0

    def step(self, member: int, current: Weights, mean: Weights) -> Weights:
        """Member `member`'s next global weights from its current ones and the round's weighted mean."""
        if self.is_fedavg:
            return mean
        params = self._params.get(member)
        if params is None:
            params = {k: torch.tensor(v, dtype=torch.float64) for k, v in current.items() if np.issubdtype(v.dtype, np.floating)}
            self._params[member] = params
            self._optimisers[member] = torch.optim.SGD(list(params.values()), lr=self.lr, momentum=self.momentum)
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(torch.from_numpy(np.asarray(current[k], np.float64)))
                p.grad = p.detach() - torch.from_numpy(np.asarray(mean[k], np.float64))
        self._optimisers[member].step()
        return {k: (params[k].detach().numpy().astype(v.dtype) if k in params else np.array(mean[k], copy=True)) for k, v in current.items()}
