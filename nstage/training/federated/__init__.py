"""Federated weak training: hospitals train the station classifier together, each on its own cohort, without
sharing an image or a patient's probability (docs/federated.md). The engine is NVIDIA FLARE (optional extra
`nstage[federated]`); the recipe is `nstage train`'s."""
