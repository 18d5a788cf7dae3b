"""The trained CNN in the pipeline's classifier slot (GPU when present, CPU otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nstage.analysis.classifier.batch import slot_batch
from nstage.analysis.classifier.export import load_torchscript
from nstage.analysis.classifier.inputs import station_inputs
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
        """The staging operating point: what the N stage reads."""
        return float(self.metadata["threshold"])

    @property
    def operating_points(self) -> dict[str, float]:
        """name -> threshold of the model's operating points, lowest first (a model exported before named points
        has its one threshold as `staging`)."""
        points = self.metadata.get("operating_points") or {"staging": {"threshold": self.threshold}}
        return dict(sorted(((name, float(p["threshold"])) for name, p in points.items()), key=lambda kv: kv[1]))

    @property
    def description(self) -> dict[str, object]:
        m = self.metadata
        return {"name": m["name"], "version": m["version"], "kind": m["kind"], "training_data": m["training_data"],
                "threshold": self.threshold, "operating_points": self.operating_points, "file": f"{self.path.parent.name}/{self.path.name}", "device": self.device.type}

    @torch.no_grad()
    def probabilities(self, case: StationCase) -> dict[int, float]:
        """Malignancy probability per station label present in the case's station map."""
        inputs = station_inputs(case, self.settings, str(self.metadata["training"].get("rules", "tnm")))
        if inputs.labels.size == 0:
            return {}
        batch = [torch.from_numpy(a).to(self.device) for a in slot_batch([inputs], self.settings).as_tuple()]
        prob = torch.sigmoid(self.module(*batch).float())[0].cpu().numpy()
        return {int(lab): float(prob[lab - 1]) for lab in inputs.labels}

    def classify(self, case: StationCase) -> dict[str, StationCall]:
        by_label = self.probabilities(case)
        names = {st.station: st.label for st in load_stations()}
        points = self.operating_points
        out = {}
        for station in case.uptake:
            prob = by_label.get(names[station], 0.0)
            out[station] = StationCall(round(prob, 4), prob >= self.threshold, {name: prob >= t for name, t in points.items()})
        return out
