"""Reference values of ComBat from inmoose (``pycombat_norm``) for tests/test_radiomics.py.

Run in a throwaway environment with ``pip install inmoose==0.9.1`` (not a dependency of the book):
``python tests/reference/make_combat_reference.py``. Writes ``tests/reference/combat_inmoose.json``.
"""
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from inmoose.pycombat import pycombat_norm

rng = np.random.default_rng(1)
p, sizes = 6, {1: 14, 2: 9, 3: 11}
ys, batch, cov = [], [], []
for b, nb in sizes.items():
    x = rng.normal(size=nb) + 0.3 * b
    ys.append(rng.normal(size=(nb, p)) * (1 + 0.5 * b) + 2 * b + np.outer(x, np.linspace(0.5, 1.5, p)))
    batch += [b] * nb
    cov.append(x)
y, batch, x = np.vstack(ys), np.array(batch), np.concatenate(cov)
ref = {
    "versions": {"inmoose": version("inmoose"), "numpy": version("numpy")},
    "data": y.tolist(), "batch": batch.tolist(), "covariate": x.tolist(),
    # every batch seen, covariate kept
    "combat_covariate": np.asarray(pycombat_norm(y.T, batch, covar_mod=x[:, None])).T.tolist(),
    # reference batch 1: what a fit on batch 1 alone gives the unseen batches 2 and 3
    "combat_ref1": np.asarray(pycombat_norm(y.T, batch, ref_batch=1)).T.tolist(),
}
Path(__file__).with_name("combat_inmoose.json").write_text(json.dumps(ref))
