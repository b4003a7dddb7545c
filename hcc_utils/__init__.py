"""hcc_utils: the thin helper package behind the hcc-dsfr-book notebooks.

Stages (data flow in one direction; a stage imports only earlier stages):
config -> manifest + io -> synthetic -> preprocess -> segmentation -> features -> models -> stats -> report -> run
"""

__version__ = "0.1.0"
