"""Training files: today's flat keys still work, split into the engine's and the task's; the
task key picks a task from the kneescope.tasks entry points; mistakes are one error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.cli.app import main
from kneescope.errors import ConfigError
from kneescope.training.config import load_training_file, task_config, task_factory

FLAT = """
name = "knee-3d"
mode = "3d"
network = "unet3d-small"
labels = "oai-zib"
data_dir = "data"
spacing_mm = [0.7, 0.3646, 0.3646]
patch_size_vox = [48, 96, 96]
batch_size = 2
budget = "4GB"
iterations = 2000
max_minutes = 60
lr = 0.003
seed = 7
val_fraction = 0.1
"""


def test_flat_file_splits_into_engine_and_task(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(FLAT)
    training = load_training_file(path)
    assert (training.name, training.task) == ("knee-3d", "segmentation")
    engine = training.engine
    assert (engine.iterations, engine.batch_size, engine.lr, engine.seed) == (2000, 2, 0.003, 7)
    assert (engine.budget, engine.max_minutes, engine.ema_decay) == ("4GB", 60, None)
    options = task_config(task_factory(training.task), training, str(path))
    assert isinstance(options, SegmentationTrainConfig)
    assert (options.labels, options.patch_size_vox, options.val_fraction) == (
        "oai-zib",
        (48, 96, 96),
        0.1,
    )
    assert training.with_engine(iterations=5).engine.iterations == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('task = "knitting"', "unknown training task 'knitting' (installed: "),
        ("patchsize = [4, 4, 4]", "patchsize: Extra inputs are not permitted"),
        ("ema_decay = 1.5", "ema_decay: Input should be less than 1"),
        ('schedule = "linear"', "schedule: Input should be 'poly', 'cosine' or 'constant'"),
    ],
    ids=["unknown-task", "misspelt-task-key", "bad-engine-value", "unknown-schedule"],
)
def test_mistakes_are_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f"{extra}\n{FLAT}")
    ws = tmp_path / "ws"
    assert main(["train", "-c", str(path), "-w", str(ws)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


def test_segmentation_is_registered_as_a_task() -> None:
    from kneescope.capabilities.segmentation.task import TRAINING

    assert task_factory("segmentation") is TRAINING
    with pytest.raises(ConfigError, match="unknown training task"):
        task_factory("nope")
