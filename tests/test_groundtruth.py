"""Evaluation-set labels from the official evaluators' ground-truth folders."""

import pandas as pd
import pytest

from eat_asd.data import DataError
from eat_asd.groundtruth import apply_ground_truth, ground_truth_files, read_ground_truth


def labelled_scores():
    rows = []
    for section in ("00", "01"):
        for domain in ("source", "target"):
            for label in ("normal", "anomaly"):
                for i in range(3):
                    name = f"section_{section}_{domain}_test_{label}_{len(rows):04d}_mdl_{domain[0].upper()}_spd_{i}.wav"
                    rows.append(dict(filename=name, machine="fan", section=section, domain=domain, label=label,
                                     attribute_string="", score=0.1 * i, decision=i % 2))
    return pd.DataFrame(rows)


def unlabeled(scores, names=None):
    out = scores.assign(label="unknown", domain="unknown")
    return out.assign(filename=out["filename"].map(names)) if names else out


@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_anonymised_and_original_names_get_their_labels(tmp_path, ground_truth_writer, layout):
    truth = labelled_scores()
    names = ground_truth_writer(truth, tmp_path, layout)
    assert (tmp_path / "ground_truth_data" / "ground_truth_fan_section_01_test.csv").read_text().startswith("section_01_0001.wav,")
    # the clips under their anonymised evaluation names, as a DCASE evaluation set ships them
    got = apply_ground_truth(unlabeled(truth, names), tmp_path, "fan")
    assert got["label"].tolist() == truth["label"].tolist() and got["domain"].tolist() == truth["domain"].tolist()
    assert got["filename"].tolist() == [names[n] for n in truth["filename"]]  # names and scores stay as scored
    assert got["score"].tolist() == truth["score"].tolist()
    assert got["attribute_string"].iloc[0] == "mdl_S_spd_0"  # from the original name
    # the same clips under their original names, found through the attributes files
    got = apply_ground_truth(unlabeled(truth), tmp_path, "fan")
    assert got["label"].tolist() == truth["label"].tolist() and got["domain"].tolist() == truth["domain"].tolist()
    table = read_ground_truth(tmp_path, "fan")
    assert sorted(table["section"].unique()) == ["00", "01"] and len(table) == len(truth)
    assert len(ground_truth_files(tmp_path, "fan")) == 6 and ground_truth_files(tmp_path, "pump") == []


def test_attributes_are_optional_for_anonymised_names(tmp_path, ground_truth_writer):
    truth = labelled_scores()
    names = ground_truth_writer(truth, tmp_path)
    for f in (tmp_path / "ground_truth_attributes").iterdir():
        f.unlink()
    got = apply_ground_truth(unlabeled(truth, names), tmp_path, "fan")
    assert got["label"].tolist() == truth["label"].tolist()
    with pytest.raises(DataError, match="not listed in ground_truth_data"):
        apply_ground_truth(unlabeled(truth), tmp_path, "fan")  # original names need the attributes files


def test_bad_ground_truth_is_named(tmp_path, ground_truth_writer):
    truth = labelled_scores()
    names = ground_truth_writer(truth, tmp_path)
    scores = unlabeled(truth, names)
    with pytest.raises(DataError, match="needs the folders"):
        apply_ground_truth(scores, tmp_path / "nowhere", "fan")
    with pytest.raises(DataError, match="no ground_truth_data/ground_truth_pump_section_XX_test.csv"):
        apply_ground_truth(scores.assign(machine="pump"), tmp_path, "pump")
    with pytest.raises(DataError, match=r"1 clip\(s\) of fan listed there were not scored"):
        apply_ground_truth(scores.iloc[1:], tmp_path, "fan")
    extra = pd.concat([scores, scores.iloc[:1].assign(filename="section_00_9999.wav")])
    with pytest.raises(DataError, match=r"section_00_9999.wav"):
        apply_ground_truth(extra, tmp_path, "fan")
    with pytest.raises(DataError, match="contradict"):
        apply_ground_truth(scores.assign(label=truth["label"].map({"normal": "anomaly", "anomaly": "normal"})), tmp_path, "fan")
    data = tmp_path / "ground_truth_data" / "ground_truth_fan_section_00_test.csv"
    good = data.read_text()
    data.write_text(good.replace(",1\n", ",2\n", 1))
    with pytest.raises(DataError, match=r"ground_truth_fan_section_00_test.csv: row \d+ .*value '2', expected 0 or 1"):
        apply_ground_truth(scores, tmp_path, "fan")
    data.write_text(good)
    (tmp_path / "ground_truth_domain" / "ground_truth_fan_section_01_test.csv").unlink()
    with pytest.raises(DataError, match="ground_truth_domain/ground_truth_fan_section_01_test.csv: missing"):
        read_ground_truth(tmp_path, "fan")


def test_an_attributes_table_is_not_a_name_mapping(tmp_path, ground_truth_writer):
    truth = labelled_scores()
    ground_truth_writer(truth, tmp_path, "nested")
    (tmp_path / "ground_truth_attributes" / "fan" / "attributes_00.csv").write_text("file_name,d1p,d1v\nsection_00_0001.wav,mdl,A\n")
    with pytest.raises(DataError, match="not a mapping of anonymised to original file names"):
        read_ground_truth(tmp_path, "fan")


def test_the_workflow_checks_coverage_before_any_job(tmp_path, ground_truth_writer):
    from eat_asd.groundtruth import check_covers

    ground_truth_writer(labelled_scores(), tmp_path)
    check_covers(tmp_path, {"fan": ["00", "01"]})
    with pytest.raises(DataError, match=r"ground_truth: .* lacks 2 file\(s\): ground_truth_data/ground_truth_fan_section_02_test.csv"):
        check_covers(tmp_path, {"fan": ["00", "02"]})
    with pytest.raises(DataError, match="ground_truth: .* needs the folders"):
        check_covers(tmp_path / "gt", {"fan": ["00"]})


def test_results_code_does_not_load_torch():
    import subprocess
    import sys

    code = ("import sys, eat_asd.groundtruth, eat_asd.metrics, eat_asd.report, eat_asd.stages; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("folder", ["ground_truth_data", "ground_truth_domain", "ground_truth_attributes"])
def test_a_clip_listed_twice_is_refused(tmp_path, ground_truth_writer, folder):
    # the last row used to win: a clip listed again with the other label or domain silently flipped
    truth = labelled_scores()
    names = ground_truth_writer(truth, tmp_path)
    path = tmp_path / folder / "ground_truth_fan_section_00_test.csv"
    first = path.read_text().splitlines()[0]
    name, value = first.split(",", 1)
    flipped = {"0": "1", "1": "0"}.get(value, value)
    path.write_text(path.read_text() + f"{name},{flipped}\n")
    n_rows = len(path.read_text().splitlines())
    with pytest.raises(DataError, match=rf"{folder}/ground_truth_fan_section_00_test.csv: clip {name} is listed twice "
                                        rf"\(rows 1 and {n_rows}\)"):
        apply_ground_truth(unlabeled(truth, names), tmp_path, "fan")
