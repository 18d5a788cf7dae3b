"""Station mapping: the atlas of lymph node stations carried onto the patient's CT.

Enters: the patient's CT volume and grid, and one or more atlases (atlas CT + station label map).
Leaves: the station label map (and the blood-pool region) on the CT grid with the registration's
status and quality figures (landmark pre-alignment, Elastix affine + B-spline, label transfer).
"""
