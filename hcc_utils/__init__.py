"""hcc_utils: the thin helper package behind the hcc-dsfr-book notebooks.

A module imports only modules of earlier layers; the layers and a line on every module are in the README's Layout
section, and tests/test_layering.py enforces them.
"""

__version__ = "0.1.0"
