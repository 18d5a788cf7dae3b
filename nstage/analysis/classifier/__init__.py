"""The station classifier slot and the trained CNN that fills it (inference only).

Enters: a :class:`StationCase` (CT, SUV, station map, measurements) and the models folder.
Leaves: a probability and a call per station. Training lives above the pipeline, in nstage.training.
Heavy imports (torch) stay inside the modules that need them.
"""
