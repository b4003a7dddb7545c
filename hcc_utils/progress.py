"""Progress of a long computation inside a notebook, for the terminal that runs the book.

:mod:`hcc_utils.run` gives every notebook kernel the environment variable :data:`ENV`, the path of a file; each
:func:`report` appends one JSON line to it, which the runner prints as it arrives (one line per epoch of the U-Net,
for example). Outside a book run (JupyterLab, tests) the variable is unset and :func:`report` does nothing, so the
notebook's own output is never touched.
"""
from __future__ import annotations

import json
import os
import time

#: Environment variable naming the progress file of the running step.
ENV = "HCC_PROGRESS_FILE"


def report(task: str, done: int, total: int, **values: float | str) -> None:
    """Append one progress line to the file named by ``$HCC_PROGRESS_FILE`` (nothing when it is unset).

    Parameters
    ----------
    task : str
        What progresses, e.g. ``"U-Net AP"``.
    done, total : int
        Units finished so far and in all (e.g. epochs).
    **values : float or str
        Numbers to show beside it (e.g. ``train_loss``, ``valid_loss``, ``dice``, ``seconds``); non-finite numbers
        are written as null.

    Returns
    -------
    None
    """
    path = os.environ.get(ENV)
    if not path:
        return
    clean = {k: (v if isinstance(v, str) or v == v and abs(v) != float("inf") else None) for k, v in values.items()}
    line = json.dumps({"task": task, "done": int(done), "total": int(total), "time": time.time(), **clean})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
