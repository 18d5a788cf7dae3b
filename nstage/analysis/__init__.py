"""Analysis: what the stations show and what it means for the N stage.

Enters: the study's CT and SUV volumes and the station map on the CT grid.
Leaves: station measurements, blood pool, tumour side, the classifier slot's calls, the N stage
(TNM 8/9, with reasons) and the SUV baselines beside it.
"""
