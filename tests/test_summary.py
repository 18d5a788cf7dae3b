"""The printed run summary (`make demo`): the model's calls beside the generator's truth and the baselines' calls."""

from __future__ import annotations

import json

from nstage.summary import main, summary_lines


def _result() -> dict:
    st = {"probability": 0.9, "malignant": True, "suv_max": 4.0, "suv_peak": 3.0, "volume_ml": 20.0, "index_node": None}
    return {"tumour_side": "R", "tumour_side_source": "auto", "rule_set": "tnm", "model": {"name": "m"},
            "n_stage": {"tnm8": "N2", "tnm9": "N2a"},
            "stations": {"7": st, "4L": {**st, "probability": 0.1, "malignant": False}},
            "baseline": {"suvmax": {"rule": "SUVmax >= 2.5", "n_stage": {"tnm8": "N3", "tnm9": "N3"},
                                    "stations": {"7": {"malignant": True}, "4L": {"malignant": True}}},
                         "ct_size": {"rule": "short axis", "n_stage": {"tnm8": "N0", "tnm9": "N0"},
                                     "stations": {"7": {"malignant": False}, "4L": {"malignant": False}}}},
            "timings_s": {"load study": 1.0}}


def test_truth_and_baseline_calls_stand_beside_each_station(tmp_path, capsys):
    truth = {"n_stage": {"tnm8": "N3", "tnm9": "N3"}, "tumour_side": "R",
             "stations": {"7": {"malignant": True}, "4L": {"malignant": True}}}
    lines = summary_lines(_result(), truth)
    assert lines[1].startswith("truth (generator): N3") and "WRONG" in lines[1]
    row7 = next(line for line in lines if line.split()[0] == "7")
    row4l = next(line for line in lines if line.split()[0] == "4L")
    assert row7.split()[1] == "MALIGNANT" and row7.split()[-2:] == ["S", "MALIGNANT"]
    assert row4l.split()[1] == "benign" and row4l.split()[-2:] == ["S", "MALIGNANT"]  # the model missed it, SUVmax did not
    (tmp_path / "result.json").write_text(json.dumps(_result()))
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    assert main([str(tmp_path), "--truth", str(tmp_path / "truth.json")]) == 0
    out = capsys.readouterr().out
    assert "truth (generator): N3" in out
    assert out.splitlines()[-3:] == ["N stage  model  truth (generator)", "TNM 8    N2     N3     WRONG", "TNM 9    N2a    N3     WRONG"]
    assert main([str(tmp_path)]) == 0
    assert "TNM 8    N2" not in capsys.readouterr().out  # no truth, no side by side
    assert main([str(tmp_path), "--truth", str(tmp_path / "missing.json")]) == 2
    assert "truth (generator)" not in "\n".join(summary_lines(_result()))


def test_the_true_metastases_are_listed_in_station_order_with_size_and_uptake():
    truth = {"n_stage": {"tnm8": "N2", "tnm9": "N2a"}, "tumour_side": "R", "stations": {},
             "nodes": [{"station": "7", "malignant": True, "short_axis_mm": 9.46, "suv": 1.162},
                       {"station": "4L", "malignant": False, "short_axis_mm": 12.0, "suv": 5.0},
                       {"station": "4L", "malignant": True, "short_axis_mm": 4.11, "suv": 1.374}]}
    line = next(x for x in summary_lines(_result(), truth) if x.startswith("true metastatic nodes"))
    assert line.endswith(": 7 9.5 mm SUV 1.16; 4L 4.1 mm SUV 1.37")  # the result's station order; benign nodes left out
    assert summary_lines(_result(), {**truth, "nodes": []})[2].endswith(": none")
