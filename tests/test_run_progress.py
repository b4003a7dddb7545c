"""What the terminal shows during a book run: progress lines relayed from the kernel, the time left, a clean log
file, no kernel transport warning, and step times that a skipped rerun keeps."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat

from hcc_utils import progress, run
from hcc_utils.run import monitor


def test_report_does_nothing_outside_a_book_run(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.report("U-Net AP", 1, 3, dice=0.5)  # no file, no error
    f = tmp_path / "p.jsonl"
    monkeypatch.setenv(progress.ENV, str(f))
    progress.report("U-Net AP", 1, 3, unit="epoch", dice=0.5, valid_loss=float("nan"))
    event = json.loads(f.read_text())
    assert event["done"] == 1 and event["dice"] == 0.5 and event["valid_loss"] is None


def test_progress_line_and_estimates():
    line = monitor.format_progress({"task": "U-Net AP", "done": 2, "total": 8, "unit": "epoch", "train_loss": 0.41234,
                                    "valid_loss": 0.39, "dice": 0.6123, "elapsed": 20.0, "seconds": 10.0})
    assert line.startswith("U-Net AP epoch 2/8  loss 0.412  valid loss 0.390  Dice 0.612")
    assert "(10 s/epoch, about 1 min 00 s left in it)" in line
    assert monitor.duration(245) == "4 min 05 s" and monitor.duration(3725) == "1 h 02 min"
    assert monitor.run_estimate(["a", "b", "c"], {"a", "c"}, {"a": 60.0, "b": 100.0, "c": 30.0}) == (90.0, True)
    assert monitor.run_estimate(["a", "b"], {"a", "b"}, {"a": 60.0, "b": None}) == (60.0, False)
    assert monitor.estimate_text(60.0, False) == "at least 1 min 00 s"


def test_monitor_relays_lines_and_says_when_a_step_is_quiet(tmp_path):
    lines: list[str] = []
    f = tmp_path / "p.jsonl"
    with monitor.StepMonitor(f, lines.append, n_cells=5, expected=120.0, heartbeat=1.0) as mon:
        mon.cell_started(None, 2)
        with open(f, "a") as fh:
            fh.write(json.dumps({"task": "U-Net PP", "done": 1, "total": 2, "unit": "epoch", "dice": 0.25,
                                 "time": time.time(), "seconds": 3.0}) + "\n")
            fh.write('{"task": "half a li')  # being written: read next time
        time.sleep(2.5)
    assert any("U-Net PP epoch 1/2" in s and "Dice 0.250" in s for s in lines)
    assert any("still running" in s and "cell 3/5" in s and "previous run: 2 min 00 s" in s for s in lines)
    assert not f.exists()


def test_log_file_has_no_carriage_returns(tmp_path):
    shown: list[str] = []
    log = monitor.RunLog(shown.append, tmp_path / "run.log")
    log("a\rb")
    log("c")
    assert "\r" not in (tmp_path / "run.log").read_text() and (tmp_path / "run.log").read_text() == "a\nb\nc\n"


def test_skipped_rerun_keeps_step_times(tmp_path, monkeypatch):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, str(nbdir / "a.ipynb"))

    def fake(src, dst, params, **kw):
        time.sleep(0.2)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Path(dst).write_text(Path(src).read_text())

    monkeypatch.setattr("hcc_utils.run.execute.execute_notebook", fake)
    lines: list[str] = []
    args = dict(notebooks_dir=nbdir, executed_dir=tmp_path / "ex", state_path=tmp_path / "state.json",
                manifest_hash="m", code_hash="c", settings={}, log=lines.append)
    first = run.run_steps([run.Step("a", "a", {})], **args)
    assert first[0].status == "ran" and first[0].last_seconds >= 0.2
    lines.clear()
    again = run.run_steps([run.Step("a", "a", {})], **args)
    assert again[0].status == "skipped" and again[0].seconds == 0 and again[0].last_seconds == first[0].last_seconds
    summary = run.RunSummary("ci", None, again).to_json()
    assert summary["steps"][0]["last_seconds"] == round(first[0].last_seconds, 2)
    forced = run.run_steps([run.Step("a", "a", {})], force=True, **args)
    assert forced[0].status == "ran"
    assert any(re.search(r"previous run of this step: 0\.[2-9] s", s) for s in lines)


def test_real_kernel_progress_reaches_the_terminal_without_transport_warning(tmp_path, capfd):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("n = 2", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from hcc_utils.progress import report\n"
                                          "for i in range(n):\n    report('toy', i + 1, n, unit='epoch', dice=0.5)")]
    nb.metadata["kernelspec"] = {"name": run.KERNEL, "display_name": run.KERNEL, "language": "python"}
    nbformat.write(nb, str(tmp_path / "toy.ipynb"))
    lines: list[str] = []
    res = run.run_steps([run.Step("toy", "toy", {"n": 3})], notebooks_dir=tmp_path, executed_dir=tmp_path / "ex",
                        state_path=tmp_path / "state.json", manifest_hash="m", code_hash="c", settings={},
                        log=lines.append)
    assert res[0].status == "ran"
    assert [s.strip().split("  ")[0] for s in lines if "toy epoch" in s] == ["toy epoch 1/3", "toy epoch 2/3",
                                                                             "toy epoch 3/3"]
    err = capfd.readouterr().err
    assert "without encryption" not in err and "\r" not in err


def test_kernels_side_by_side_each_report_their_own_progress(tmp_path):
    """Two real kernels at once (jobs=2): each gets its own progress file, so every line reaches the terminal once,
    named after its step."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("n = 2\nname = 'x'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import time\nfrom hcc_utils.progress import report\n"
                                          "for i in range(n):\n    report(name, i + 1, n, unit='epoch')\n"
                                          "    time.sleep(0.5)")]
    nb.metadata["kernelspec"] = {"name": run.KERNEL, "display_name": run.KERNEL, "language": "python"}
    nbformat.write(nb, str(tmp_path / "toy.ipynb"))
    lines: list[str] = []
    steps = [run.Step(f"toy_{k}", "toy", {"n": 3, "name": f"task {k}"}) for k in ("AP", "PP")]
    res = run.run_steps(steps, notebooks_dir=tmp_path, executed_dir=tmp_path / "ex", state_path=tmp_path / "state.json",
                        manifest_hash="m", code_hash="c", settings={}, jobs=2, log=lines.append)
    assert [r.status for r in res] == ["ran", "ran"]
    for k in ("AP", "PP"):
        mine = [s.strip().split("  ")[0] for s in lines if f"task {k} epoch" in s]
        assert mine == [f"toy_{k}: task {k} epoch {i}/3" for i in (1, 2, 3)]
