"""`kneescope synth` into a folder that holds a cohort: refuse, --append (merge) or
--overwrite (replace); nothing of the old cohort is lost on any path."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from kneescope.cli.app import main
from kneescope.synth.cohort import CohortSpec, participant_id
from kneescope.synth.generate import generate_cohort

# radiographs but no MRI: DICOM series, truth and clinical tables in seconds
FAST = ["-n", "1", "--visits", "V00", "--no-mri"]
TABLES = [
    "0.E.1/contents.csv",
    "truth/knee_truth.csv",
    "truth/xray_truth.csv",
    "truth/full_leg_truth.csv",
    "truth/subjects.csv",
    "clinical/AllClinical.csv",
    "clinical/kXR.csv",
]


def _synth(out: Path, *args: str) -> int:
    return main(["synth", "-o", str(out), *args])


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (hidden ones too) -> sha256; folders -> 'dir'."""
    return {
        p.relative_to(folder).as_posix(): (
            "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(folder.rglob("*"))
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*"))


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Reference cohorts, one subject each, written by single runs with seeds 0 and 1."""
    root = tmp_path_factory.mktemp("synth_refs")
    refs = {}
    for seed in (0, 1):
        refs[seed] = root / f"seed{seed}"
        assert _synth(refs[seed], *FAST, "--seed", str(seed)) == 0
    return refs


@pytest.fixture
def cohort(cohorts: dict[int, Path], tmp_path: Path) -> Path:
    """A private copy of the seed-0 cohort."""
    out = tmp_path / "cohort"
    shutil.copytree(cohorts[0], out)
    return out


def test_non_empty_folder_is_refused_untouched(
    cohort: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(cohort)
    capsys.readouterr()
    assert _synth(cohort, *FAST, "--seed", "1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is not empty" in err and "--append" in err and "--overwrite" in err
    assert _snapshot(cohort) == before
    assert _leftovers(cohort) == []


def test_append_keeps_every_subject_truth(
    cohort: Path, cohorts: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert _synth(cohort, *FAST, "--seed", "1", "--append", "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["subjects"], payload["cohort_subjects"], payload["mode"]) == (1, 2, "append")
    for table in TABLES:  # the old rows, then exactly what the single seed-1 run wrote
        assert _rows(cohort / table) == _rows(cohorts[0] / table) + _rows(cohorts[1] / table)
    for seed in (0, 1):  # every series of both runs, byte for byte
        for path in (cohorts[seed] / "0.E.1").rglob("0*"):
            rel = path.relative_to(cohorts[seed])
            assert (cohort / rel).read_bytes() == path.read_bytes(), rel
    spec = json.loads((cohort / "synth_spec.json").read_text())
    assert [(p["first_index"], p["spec"]["seed"]) for p in spec["parts"]] == [(0, 0), (0, 1)]
    assert _leftovers(cohort) == []


def test_append_with_the_same_seed_equals_one_run(tmp_path: Path) -> None:
    fast = ["--visits", "V00,V01", "--no-mri", "--no-xray", "--seed", "3"]
    assert _synth(tmp_path / "once", *fast, "-n", "3") == 0
    assert _synth(tmp_path / "parts", *fast, "-n", "1") == 0
    assert _synth(tmp_path / "parts", *fast, "-n", "2", "--append") == 0
    assert _snapshot(tmp_path / "parts") == _snapshot(tmp_path / "once")


def test_append_refuses_a_participant_id_already_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # seed 215015 draws, as its first subject, the id of seed 0's first subject
    assert participant_id(215015, 0) == participant_id(0, 0)
    out = tmp_path / "cohort"
    assert _synth(out, "-n", "1", "--visits", "V00", "--no-mri", "--no-xray") == 0
    before = _snapshot(out)
    capsys.readouterr()
    args = ["-n", "1", "--visits", "V00", "--no-mri", "--no-xray", "--seed", "215015"]
    assert _synth(out, *args, "--append") == 2
    err = capsys.readouterr().err
    assert f"participant {participant_id(0, 0)} (seed 215015) is already in" in err
    assert _snapshot(out) == before


def test_overwrite_replaces_the_whole_cohort(
    cohort: Path, cohorts: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _synth(cohort, *FAST, "--seed", "1", "--overwrite") == 0
    assert _snapshot(cohort) == _snapshot(cohorts[1])
    assert _leftovers(cohort) == []
    capsys.readouterr()
    assert _synth(cohort, *FAST, "--append", "--overwrite") == 2
    assert "exclude each other" in capsys.readouterr().err


def test_a_folder_that_is_no_cohort_is_never_replaced_or_added_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("months of work\n")
    for flag in ("--overwrite", "--append"):
        assert _synth(folder, *FAST, flag) == 2
        assert "holds no synthetic cohort" in capsys.readouterr().err
        assert _snapshot(folder) == {"thesis.tex": hashlib.sha256(b"months of work\n").hexdigest()}


@pytest.mark.parametrize("fail_at", [0, 3, 8])
def test_an_error_halfway_leaves_the_cohort_as_it_was(
    cohort: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """A failing rename (a full disk) while the new subject moves in: every step is undone.

    The 9 steps: the subject's folder moves in, then 8 tables are replaced, the spec last.
    """
    before = _snapshot(cohort)
    real_replace = os.replace
    calls: list[str | Path] = []

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst).is_relative_to(cohort):
            calls.append(dst)
            if len(calls) == fail_at + 1:
                raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    spec = CohortSpec(subjects=1, visits=("V00",), seed=1, mri=False)
    with pytest.raises(OSError, match="No space left"):
        generate_cohort(spec, cohort, mode="append")
    monkeypatch.undo()
    failed = Path(calls[fail_at]).relative_to(cohort).as_posix()
    expected = {0: "0.E.1/" + participant_id(1, 0), 3: ".csv", 8: "synth_spec.json"}[fail_at]
    assert failed.endswith(expected)
    assert _snapshot(cohort) == before
    assert _leftovers(cohort) == []


def test_leftovers_of_a_killed_run_are_cleaned_and_a_moved_cohort_put_back(
    cohort: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 between the two renames of --overwrite: the old cohort lies aside, DIR is gone."""
    import subprocess
    import sys

    before = _snapshot(cohort)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    cohort.rename(cohort.parent / f".cohort.synth-old-{dead}-0badc0de")
    half = cohort.parent / f".cohort.synth-tmp-{dead}-0badf00d"
    (half / "truth").mkdir(parents=True)
    (half / "truth" / "subjects.csv").write_text("ParticipantID\n")
    capsys.readouterr()
    assert _synth(cohort, *FAST, "--seed", "1") == 2  # the cohort is back: not empty
    assert "is not empty" in capsys.readouterr().err
    assert _snapshot(cohort) == before
    assert _leftovers(cohort) == []
