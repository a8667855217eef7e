"""`kneescope train` picks the classification and landmark tasks by a training file's `task` key.

The tasks come from the `kneescope.tasks` entry-point group; the model files they write are of
their own kinds and predict on held-out synthetic images.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kneescope.capabilities.classification import predict_classes, synthetic_classification
from kneescope.models.model_file import load_model_file


def _kneescope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kneescope", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # a subprocess importing torch and MONAI, then training: about 20 s of CPU
def test_train_writes_a_classification_model_from_a_training_file(tmp_path: Path) -> None:
    config = tmp_path / "bars.toml"
    config.write_text(
        'task = "classification"\nname = "bars"\niterations = 40\nbatch_size = 32\n'
        'validate_every = 40\nprecision = "fp32"\nschedule = "constant"\n'
        '[data]\nsource = "synthetic"\ntrain = 200\nvalidation = 60\nn_classes = 2\n',
        encoding="utf-8",
    )
    result = _kneescope("train", "-c", str(config), "-w", str(tmp_path / "ws"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["classes"] == ["bar_0deg", "bar_90deg"]
    model_path = tmp_path / "ws" / "models" / "bars.pt"
    assert load_model_file(model_path).kind == "classification"
    held_out = synthetic_classification(100, n_classes=2, seed=1234)
    prediction = predict_classes(model_path, held_out.images)
    majority = max(np.mean(held_out.labels == 0), np.mean(held_out.labels == 1))
    assert np.mean(prediction.indices == held_out.labels) >= majority + 0.25


def test_a_landmark_file_without_data_fails_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "points.toml"
    config.write_text('task = "landmarks"\nname = "points"\n', encoding="utf-8")
    result = _kneescope("train", "-c", str(config), "-w", str(tmp_path / "ws"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: a landmark training file needs a [data] table")
    assert "Traceback" not in result.stderr
