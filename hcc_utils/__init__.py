"""hcc_utils: the thin helper package behind the hcc-dsfr-book notebooks.

A module imports only modules of earlier layers (README, Layout; tests/test_layering.py):
config, files, io, stats -> manifest -> synthetic, preprocess -> segmentation -> features -> gradcam, lits
-> cohort_table, models, report, survival, nomogram_widget -> run
"""

__version__ = "0.1.0"
