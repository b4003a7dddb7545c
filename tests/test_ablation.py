"""The ablation's pieces: the ring region, the compared designs, the contrast design and the page table."""
import numpy as np
import pandas as pd
import pytest
import torch

from hcc_utils import ablation


def test_ring_surrounds_the_tumour_and_excludes_it():
    m = np.zeros((1, 20, 20), bool)
    m[0, 8:12, 8:12] = True
    r = ablation._ring(m, width=2)
    assert not (r & m).any()
    assert r[0, 6, 6] and r[0, 13, 13] and not r[0, 5, 5] and not r[0, 14, 14]
    assert r.sum() == 8 * 8 - 4 * 4


def test_pool_is_the_region_mean_per_channel():
    fmap = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    region = np.zeros((1, 4, 4), bool)
    region[0, :2, :2] = True
    out = ablation._pool(fmap, region)
    np.testing.assert_allclose(out[0], [np.mean([0, 1, 4, 5]), np.mean([16, 17, 20, 21])])


def test_variants_mark_the_profile_default_once_per_factor():
    v = ablation.variants(["enc2"], ["enc1", "enc2", "dec1"])
    defaults = [(f, lab) for f, lab, d, _ in v if d]
    assert ("feature layer", "enc2 (tumour mean)") in defaults
    assert sum(f == "pooling region" for f, _ in defaults) == 1
    assert {f for f, *_ in v} == {"feature layer", "pooling region", "mask"}


def _tables():
    idx = pd.Index(["a", "b", "c"], name="patient_id")
    t = {}
    for ph in ("AP", "PP"):
        for region, add in (("tumour", 10.0), ("ring", 3.0)):
            t.setdefault(ph, {})[("enc2", region)] = pd.DataFrame(
                np.full((3, 2), add), index=idx, columns=[f"{ph}_enc2_{region}_c{k}" for k in range(2)])
    return t


def test_contrast_design_is_tumour_minus_ring_and_dp_joins_phases():
    X = ablation._design(_tables(), ["AP", "PP"], [("enc2", "contrast")])
    assert list(X.columns) == ["AP_enc2_contrast_c0", "AP_enc2_contrast_c1", "PP_enc2_contrast_c0",
                               "PP_enc2_contrast_c1"]
    assert (X.to_numpy() == 7.0).all()


def test_missing_region_gives_no_design():
    assert ablation._design(_tables(), ["PP"], [("enc2", "manual")]) is None


def test_summary_has_one_row_per_variant_and_phase_columns():
    rows = [{"factor": "feature layer", "variant": v, "default": False, "phase": ph, "n_features": 2,
             "development": 0.6 + i / 10, "validation": 0.5} for i, v in enumerate(["x", "y"]) for ph in ablation.PHASES]
    s = ablation.summary(pd.DataFrame(rows, columns=ablation.COLUMNS))
    assert list(s["variant"]) == ["x", "y"]
    assert list(s.columns[2:]) == [f"{ph} {c}" for c in ("development", "validation") for ph in ablation.PHASES]
    assert s.loc[1, "PP development"] == pytest.approx(0.7)


def _profile(tmp_path):
    from hcc_utils.config import load_profile

    prof = load_profile("ci", overrides={"outputs": str(tmp_path / "out")})
    for ph in ("AP", "PP"):
        prof.out("segmentation", ph, "model.pth").write_bytes(ph.encode())
    man = tmp_path / "manifest.csv"
    man.write_text("patient_id\nP1\n")
    return prof, man


def _store(prof, man, seed=None):
    from hcc_utils.files import write_json

    out = prof.out("models", "ablation.csv")
    pd.DataFrame([{c: 0.5 for c in ablation.COLUMNS}]).to_csv(out, index=False)
    write_json({"basis": ablation.basis(prof, man, seed)}, out.with_suffix(".json"))


def test_load_without_a_run_is_none(tmp_path):
    prof, man = _profile(tmp_path)
    assert ablation.load(prof, man) == (None, "not run")


def test_load_returns_a_table_of_this_run(tmp_path):
    prof, man = _profile(tmp_path)
    _store(prof, man)
    table, why = ablation.load(prof, man)
    assert why == "" and list(table.columns) == ablation.COLUMNS


@pytest.mark.parametrize("change, said", [
    ("networks", "trained networks"), ("manifest", "manifest"), ("seed", "seed"), ("features", "feature settings")])
def test_load_refuses_a_table_of_another_run(tmp_path, change, said):
    prof, man = _profile(tmp_path)
    _store(prof, man)
    seed = None
    if change == "networks":
        prof.out("segmentation", "PP", "model.pth").write_bytes(b"retrained")
    elif change == "manifest":
        man.write_text("patient_id\nP2\n")
    elif change == "seed":
        seed = prof.seed + 1
    else:
        prof["features"]["layers"] = ["enc1", "enc2"]
    table, why = ablation.load(prof, man, seed)
    assert table is None and f"different {said})" in why
    assert prof.out("models", "ablation.csv").exists()  # kept on disk until make ablation rewrites it


def test_load_refuses_a_table_that_does_not_say_what_it_was_computed_on(tmp_path):
    prof, man = _profile(tmp_path)
    _store(prof, man)
    prof.out("models", "ablation.json").write_text("{}")
    table, why = ablation.load(prof, man)
    assert table is None and "does not record" in why


def test_the_model_comparison_step_reruns_when_the_ablation_is_written(tmp_path):
    from hcc_utils.run import hashing, steps

    prof, man = _profile(tmp_path)

    def hashes():
        plan = steps.plan(prof, optional=False)
        return hashing.step_hashes(plan, notebooks_dir=steps.NOTEBOOKS, manifest_hash="m", code_hash="c",
                                   settings=prof.settings)

    before = hashes()
    _store(prof, man)
    after = hashes()
    assert after["04_model_comparison"] != before["04_model_comparison"]
    assert after["02_unet_training_PP"] == before["02_unet_training_PP"]
