"""The weakly supervised PET/CT station classifier (patches, cache, model, training, evaluation, export).

Heavy imports (torch, monai) stay inside the modules that need them, so `nstage` imports without them.
"""
