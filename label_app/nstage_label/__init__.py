"""The MONAI Label side of nstage: thin adapters from MONAI Label's task interfaces to the domain package.

`studies` keeps the datastore folder (one CT NIfTI per study for the viewers, each study's DICOM
folder and cohort facts in its image info); `work` runs the nstage stages and keeps their results;
`tasks` holds the MONAI Label task classes. Nothing here computes a station map, an SUV figure or an
N stage itself: those come from nstage.pipeline, nstage.stationmap and nstage.training.
"""
