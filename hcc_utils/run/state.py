"""The state of the steps between runs: ``outputs/<profile>/run_state.json``.

Per step: ``status`` (``ok``, ``running``, ``stale``, ``failed``, ``unavailable``, ``missing``), the input ``hash``
of the finished run (None unless ``ok``), ``seconds`` and ``finished`` of the step's last complete execution (kept
while a step reruns, fails or turns stale: they are what the run's time estimate reads), and ``executed``.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load_state(path: Path) -> dict:
    """The run state at ``path`` (``{"steps": {}}`` when absent or unreadable)."""
    path = Path(path)
    if path.exists():
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"steps": {}}
        state.setdefault("steps", {})
        return state
    return {"steps": {}}


def save_state(path: Path, state: dict) -> None:
    """Write the run state atomically (a temporary file moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def last_seconds(state: dict, name: str) -> float | None:
    """Seconds of the step's last complete execution, or None when it never completed."""
    s = state["steps"].get(name, {}).get("seconds")
    return None if s is None else float(s)


def _timing(record: dict) -> dict:
    return {k: record[k] for k in ("seconds", "finished") if k in record}


def mark_running(state: dict, name: str, downstream: list[str]) -> None:
    """Until it ends, neither this step nor any step downstream of it is trusted (also after an interrupt)."""
    steps = state["steps"]
    steps[name] = {"status": "running", "hash": None, "started": now(), **_timing(steps.get(name, {}))}
    for d in downstream:
        if steps.get(d, {}).get("status") == "ok":
            steps[d] = {**steps[d], "status": "stale", "hash": None}


def mark_done(state: dict, name: str, hash_: str, seconds: float, executed: str) -> None:
    """A step that finished: its hash, time and executed copy."""
    state["steps"][name] = {"status": "ok", "hash": hash_, "seconds": round(seconds, 2), "finished": now(),
                            "executed": executed}


def mark_failed(state: dict, name: str, seconds: float, executed: str) -> None:
    """A step that failed after ``seconds`` (the last complete execution's time is kept)."""
    prev = _timing(state["steps"].get(name, {}))
    state["steps"][name] = {"status": "failed", "hash": None, "failed_after": round(seconds, 2),
                            "failed_at": now(), "executed": executed, **prev}


def mark_left_out(state: dict, name: str, status: str, reason: str) -> None:
    """A step that could not run here (``unavailable``: no data; ``missing``: no notebook)."""
    state["steps"][name] = {"status": status, "reason": reason}
