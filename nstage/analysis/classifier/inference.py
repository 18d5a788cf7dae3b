"""The trained CNN in the pipeline's classifier slot (GPU when present, CPU otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nstage.analysis.classifier.export import load_torchscript
from nstage.analysis.classifier.patches import crop, extract_station_patches
from nstage.analysis.classifier.settings import PatchSettings
from nstage.analysis.classifier.station_case import StationCall, StationCase
from nstage.stations import load_stations


@dataclass
class CnnStationClassifier:
    """Station probabilities from the exported TorchScript network; malignant at >= the model's threshold."""

    module: torch.jit.ScriptModule
    metadata: dict[str, Any]
    path: Path
    device: torch.device

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> "CnnStationClassifier":
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        module, meta = load_torchscript(path, str(dev))
        return cls(module, meta, Path(path), dev)

    @property
    def settings(self) -> PatchSettings:
        return PatchSettings.from_dict(self.metadata["patch"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def description(self) -> dict[str, object]:
        m = self.metadata
        return {"name": m["name"], "version": m["version"], "kind": m["kind"], "training_data": m["training_data"],
                "threshold": self.threshold, "file": f"{self.path.parent.name}/{self.path.name}", "device": self.device.type}

    @torch.no_grad()
    def probabilities(self, case: StationCase) -> dict[int, float]:
        """Malignancy probability per station label present in the case's station map."""
        s = self.settings
        p = extract_station_patches(case.hu, case.ct_grid, case.suv, case.pet_grid, case.stations, s)
        if p.labels.size == 0:
            return {}
        x = torch.from_numpy(np.ascontiguousarray(crop(p.patches, s.size))).to(self.device)
        st = torch.from_numpy(p.labels - 1).to(self.device)
        prob = torch.sigmoid(self.module(x, st).float()).cpu().numpy()
        return {int(lab): float(v) for lab, v in zip(p.labels, prob)}

    def classify(self, case: StationCase) -> dict[str, StationCall]:
        by_label = self.probabilities(case)
        names = {st.station: st.label for st in load_stations()}
        out = {}
        for station in case.uptake:
            prob = by_label.get(names[station], 0.0)
            out[station] = StationCall(round(prob, 4), prob >= self.threshold)
        return out
