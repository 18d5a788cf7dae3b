"""Training and evaluation of the station classifier from N stages only (above the pipeline).

Enters: a cohort folder (studies + cohort.csv with tumour side and N stage).
Leaves: cached station patches, a trained and exported model (nstage.analysis.classifier reads it),
cross-validated and held-out metrics. Heavy imports (torch, monai) stay inside the modules.
"""
