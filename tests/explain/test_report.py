import json
import math
import pickle
import random

import numpy as np
import pytest
import torch

from explain import report as R
from tests.explain.standins import OPTS, StandIns

torch.set_num_threads(1)


def test_report_end_to_end_on_stand_ins(tmp_path):
    (tmp_path / "tfc-w1a1" / "ulx3s").mkdir(parents=True)
    (tmp_path / "tfc-w1a1" / "ulx3s" / "resources.json").write_text(json.dumps({"lut": 1234, "fmax_mhz": 61.5}))
    res = R.compute("tfc-w1a1", StandIns(tmp_path, conv=True), n_images=20, options=OPTS, sanity_images=6, progress=False,
                    faithfulness_steps=6)
    out = R.write_report(res, "ulx3s", tmp_path)
    doc = json.loads((out / "report.json").read_text())
    page = (out / "index.html").read_text()
    assert set(doc["methods"]) == {"gradient", "smoothgrad", "gradcam", "integrated_gradients", "guided_backprop",
                                   "occlusion", "lrp", "neuromask"}
    assert doc["hardware_occlusion_equal"] is None and "no streamlined graph" in doc["hardware"]["hardware_occlusion_reason"]
    assert doc["hardware"]["resources"]["data"]["lut"] == 1234
    assert doc["gradient_regularisation"] == {"status": "not run", "command": "make gradreg MODEL=tfc-w1a1"}
    assert doc["hardware"]["sim"]["status"] == "not run" and "make sim" in doc["hardware"]["sim"]["command"]
    assert set(doc["compared"]) == set(doc["methods"]) | {"lrp_raw"}
    for m in doc["methods"]:
        assert m in doc["metrics"]["similarity"] and m in doc["metrics"]["noise"]
        s = doc["metrics"]["similarity"][m]["spearman"]
        assert s["fp_seed_to_seed"] is not None and -1 <= s["bnn_vs_fp"]["mean"] <= 1
    assert doc["metrics"]["tests"]["smoothgrad"]["total_variation"]["p_holm"] <= 1
    assert set(doc["findings"]) == {"gradient_similar", "smoothgrad_noisier", "gradcam_differs"}
    assert all(f["verdict"] in ("supported", "not supported") or f["verdict"].startswith("undetermined (")
               for f in doc["findings"].values())
    assert doc["sanity"]["fp"]["gradient"][0]["similarity"] == pytest.approx(1.0)
    assert doc["final_layer"]["bnn"]["per_seed"][0]["ranked_by"] == "pre-sign value"
    assert "lrp_canonization" in doc["metrics"]
    assert page.count("data:image/png;base64,") >= 1 + 9 + 2  # accuracy, galleries, noise, sanity
    assert "GradCAM differs" in page and "not run" in page and "<script" not in page
    assert not list(out.glob("*.tmp"))
    assert doc["dataset"] == "mnist" and "Dataset: <b>mnist</b>" in page
    # quantus' metrics per kind and method, finite, and the random / Sobel baselines in every table
    met = doc["metrics"]
    assert doc["quantus_version"] and met["road_images"] == 2
    for m in doc["compared"]:
        for kind in ("bnn", "fp"):
            for name in ("road", "faithfulness_correlation", "sparseness", "complexity"):
                assert math.isfinite(met["quantus"][m][kind][name]["mean"]), (m, kind, name)
    for kind in ("bnn", "fp"):
        for m in ("gradient", "integrated_gradients", "baseline:random", "baseline:sobel"):
            assert math.isfinite(met["efficient_mprt"][kind][m]["mean"])
    for b in ("random", "sobel"):
        for group, names in (("noise", ["total_variation"]), ("faithfulness", ["deletion_auc", "insertion_auc"]),
                             ("quantus", ["road", "faithfulness_correlation", "sparseness", "complexity"])):
            for kind in ("bnn", "fp"):
                for name in names:
                    assert math.isfinite(met["baselines"][b][group][kind][name]["mean"])
    for m in doc["compared"][:-1]:
        for kind in ("bnn", "fp"):
            for b in ("sobel", "random"):
                assert -1 <= met["similarity"][m]["spearman"][f"{kind}_vs_{b}"]["mean"] <= 1
    for kind in ("bnn", "fp"):  # cascading randomisation of the baselines: Sobel ignores the model entirely
        assert doc["sanity"][kind]["baseline:sobel"][-1]["similarity"] == pytest.approx(1.0)
    assert doc["subsets"] == dict(images=20, shard_images=100, road_images=2, correlation_runs=10, correlation_images=20,
                                  sanity_images=6, sanity_seed="first seed of each kind", final_layer_images=20)
    # noise, faithfulness, quantus, eMPRT, cascading randomisation
    assert page.count("baseline: random map") == 5 and page.count("baseline: Sobel edges") == 5
    assert "Metrics from quantus" in page and "ROAD" in page and "EfficientMPRT" in page


def _numbers(res):
    doc = R._jsonable(res)
    doc.pop("seconds")
    return json.dumps(doc, sort_keys=True)


def test_report_numbers_do_not_depend_on_the_order_or_process_tasks_run_in(tmp_path):
    """A mapper that runs the calls shuffled, each through pickle (as a worker process gets
    them), gives the report the same numbers as the serial one; another shard size gives a
    per-image deterministic method's maps to float rounding."""
    def shuffled(fn, calls):
        order = list(range(len(calls)))
        random.Random(len(calls)).shuffle(order)
        out = {}
        for i in order:
            f, args = pickle.loads(pickle.dumps((fn, calls[i])))
            out[i] = f(*args)
        return [out[i] for i in range(len(calls))]

    kw = dict(n_images=10, methods=["gradient", "smoothgrad", "occlusion", "neuromask"], options=OPTS, sanity_images=4,
              progress=False, faithfulness_steps=4, shard=4)
    serial = R.compute("tfc-w1a1", StandIns(tmp_path, conv=False), **kw)
    assert _numbers(R.compute("tfc-w1a1", StandIns(tmp_path, conv=False), mapper=shuffled, **kw)) == _numbers(serial)
    assert len(serial["maps"]["bnn"][0]["smoothgrad"]) == 10
    other = R.compute("tfc-w1a1", StandIns(tmp_path, conv=False), **dict(kw, methods=["gradient"], shard=3))
    # a batch of another size may round differently in float32: equal to rounding
    np.testing.assert_allclose(other["maps"]["fp"][1]["gradient"], serial["maps"]["fp"][1]["gradient"], rtol=1e-4, atol=1e-7)


def test_report_states_its_dataset_and_refuses_seeds_trained_on_another(tmp_path):
    sources = StandIns(tmp_path, conv=False)
    sources.dataset = "fashion-mnist"
    (tmp_path / "tfc-w1a1" / "seed1").mkdir(parents=True)
    (tmp_path / "tfc-w1a1" / "train.json").write_text(json.dumps({"dataset": "fashion-mnist"}))
    (tmp_path / "tfc-w1a1" / "seed1" / "train.json").write_text(json.dumps({"dataset": "mnist"}))
    with pytest.raises(R.ReportError, match="tfc-w1a1 seed 1 was trained on mnist, not fashion-mnist"):
        R.compute("tfc-w1a1", sources, n_images=10, methods=["gradient"], options=OPTS, sanity_images=4, progress=False)
    (tmp_path / "tfc-w1a1" / "seed1" / "train.json").write_text(json.dumps({"dataset": "fashion-mnist"}))
    res = R.compute("tfc-w1a1", sources, n_images=10, methods=["gradient"], options=OPTS, sanity_images=4, progress=False)
    assert res["dataset"] == "fashion-mnist" and sources.trained_dataset("tfc-w1a1", 1) == "fashion-mnist"
    out = R.write_report(res, "ulx3s", tmp_path)
    assert "Dataset: <b>fashion-mnist</b>" in (out / "index.html").read_text()
    assert json.loads((out / "report.json").read_text())["dataset"] == "fashion-mnist"


def test_report_lists_skipped_gradcam_on_mlp_and_falls_back_without_reference(tmp_path):
    res = R.compute("tfc-w1a1", StandIns(tmp_path, conv=False, reference=False), n_images=10,
                    methods=["gradient", "gradcam", "smoothgrad"], options=OPTS, sanity_images=4, progress=False)
    out = R.write_report(res, "icebreaker", tmp_path)
    doc = json.loads((out / "report.json").read_text())
    assert "MLP" in doc["skipped"]["bnn"]["gradcam"]
    assert doc["findings"]["gradcam_differs"]["verdict"] == "not applicable"
    assert doc["models"]["bnn"]["0"] == "brevitas" and any("reference unavailable" in n for n in doc["notes"])
    assert "gradcam" in (out / "index.html").read_text()


def test_hardware_summary_shows_fit_rate_and_equality():
    ok = lambda d: dict(status="ok", data=d)
    hw = dict(resources=ok(dict(board="ulx3s", part="LFE5U-85F", used=dict(lut=10609, ff=2050, bram=20, dsp=0),
                                available=dict(lut=83640, ff=83640, bram=208, dsp=156), fmax_mhz=41.28)),
              sim=dict(status="not run", command="make sim MODEL=tfc-w1a1 BOARD=ulx3s"),
              estimates=ok(dict(analytic_ii=196, fps=127551.0, clock_mhz=25.0, latency_cycles=612,
                                total=dict(lut=7374, ff=2184, bram=18))))
    rows = {r.name: r for r in R._hw_summary(hw, True, "1700 images")}
    assert rows["LUT"].text == "10609 / 83640 (12.7 %)" and rows["LUT"].note == "analytic estimate 7374"
    assert rows["Fmax"].text == "41.280 MHz" and "196 cycles" in rows["initiation interval"].text
    assert rows["sim"].code == "make sim MODEL=tfc-w1a1 BOARD=ulx3s" and "simulation" not in rows
    hw["sim"] = ok(dict(images=10000, equal=False, simulator="verilator", seconds=54.8, cycles_per_image=196.0,
                        analytic_ii=196))
    sim = {r.name: r for r in R._hw_summary(hw, None, "")}["simulation"]
    assert sim.status == "no" and sim.text == "10000 test images, equal to the reference: False"


def _page(res, model, figs):
    hw = dict(resources=dict(status="not run", command=f"make bitstream MODEL={model} BOARD=ulx3s"))
    return R.render_html(dict(res, model=model), "ulx3s", hw, None, "no <b>graph</b>", figs)


def test_page_escapes_names_and_shows_every_verdict(tmp_path):
    """Names and messages from the data are text on the page, never markup; each finding's claim
    and verdict is shown, supported ones in the 'ok' colour."""
    res = R.compute("tfc-w1a1", StandIns(tmp_path, conv=False), n_images=10, methods=["gradient", "smoothgrad"],
                    options=OPTS, sanity_images=4, progress=False)
    res["findings"]["gradient_similar"]["verdict"] = "supported"
    res["notes"] = ["seed 1 <img src=x onerror=alert(1)>"]
    res["gradient_regularisation"] = R.gradreg_study("tfc-w1a1", tmp_path)
    figs = dict(accuracy="QUND", sanity="U0FO", **{f"gallery_{m}": "R0FM" for m in res["compared"]})
    bad = "tfc<script>alert('x')</script>"
    page = _page(res, bad, figs)
    assert "<script" not in page and "<img src=x" not in page and "<b>graph</b>" not in page
    assert "tfc&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page and "no &lt;b&gt;graph&lt;/b&gt;" in page
    assert f"<title>BitLens {bad.replace('<', '&lt;').replace('>', '&gt;').replace(chr(39), '&#39;')} on ulx3s</title>" in page
    for fd in res["findings"].values():
        cls = "ok" if fd["verdict"] == "supported" else "no"
        assert f"<td class={cls}>{fd['verdict']}</td>" in page and fd["claim"] in page
    assert "<td class=ok>supported</td>" in page
    assert page.count("data:image/png;base64,") == 2 + len(res["compared"]) and "data:image/png;base64,R0FM" in page


@pytest.mark.parametrize("ceiling, label", [(None, "one FP seed"), (0.05, "not above the permuted floor")])
def test_gradient_verdict_names_why_it_is_undetermined(ceiling, label):
    """BNN-vs-FP above the floor but no usable ceiling: the verdict says which ceiling is missing."""
    ci = lambda m: dict(mean=m, ci_bootstrap=[m - 0.01, m + 0.01])
    sim = dict(bnn_vs_fp=ci(0.3), floor_permuted=ci(0.1), fp_seed_to_seed=None if ceiling is None else ci(ceiling))
    res = dict(metrics=dict(similarity=dict(gradient=dict(spearman=sim)), noise={}, tests={}), skipped={})
    v = R._findings(res)["gradient_similar"]["verdict"]
    assert v.startswith("undetermined (") and label in v
