"""Train the 3D MRI KL classifier (``kl-mri-synth``) on synthetic knees (issue 16, A).

Data: the knees ``benchmarks/mri_kl_data.py`` cached (training seed 16001, validation seed
16002; one ``.npz`` per knee-visit: the rendered MRI with its affine, side and true KL grade).
Each is prepared exactly as the ``mri_klg`` step prepares a loaded MRI
(``volume_data.prepare_volume``: reoriented to ``RIA``, a left knee mirrored, the whole field
of view resampled to the working grid, z-score normalised) and the network
(``mri_kl.mri_kl_network()``) is trained by the engine (AdamW, cosine schedule, fp32 on the
CPU, checkpoints every ``--checkpoint-every`` iterations; a second call resumes). The model
file keeps the temperature fitted on the validation set; then the prior correction
(:func:`prior_correction`, kept only when it helps on validation; ``--calibrate-only`` runs
just that on a finished model). Usage::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/mri_kl_train.py \
        --data /work/data16/A/knees --run /work/data16/A/run \
        --model /work/data16/A/kl-mri-synth.pt --iterations 300 --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from kneescope.capabilities.classification.kl import KL_CLASSES
from kneescope.capabilities.classification.mri_kl import (
    MRI_ORIENTATION,
    WORKING_GRID_VOX,
    mri_kl_network,
)
from kneescope.capabilities.classification.volume_data import (
    VolumeClassificationData,
    prepare_volume,
)
from kneescope.capabilities.classification.volume_task import (
    VolumeClassificationTask,
)
from kneescope.transforms.intensity import NormalisationConfig


def load_knees(folder: Path, size_vox: tuple[int, ...]) -> VolumeClassificationData:
    """Every cached knee in ``folder`` (sorted by name), prepared for the model."""
    files = sorted(folder.glob("*.npz"))
    files = [f for f in files if not f.name.endswith(".tmp.npz")]
    if not files:
        raise SystemExit(f"no cached knees in {folder}; run benchmarks/mri_kl_data.py first")
    volumes = np.empty((len(files), *size_vox), dtype=np.float32)
    labels = np.empty(len(files), dtype=np.int64)
    for idx, path in enumerate(files):
        with np.load(path) as knee:
            volumes[idx] = prepare_volume(
                knee["image"],
                knee["affine_ras"],
                str(knee["side"]),
                size_vox,
                orientation=MRI_ORIENTATION,
                normalisation=NormalisationConfig(),
            )
            labels[idx] = int(knee["klg"])
    names = tuple(f.stem for f in files)
    return VolumeClassificationData(volumes, labels, KL_CLASSES, names)


def main() -> None:
    from kneescope.training.engine import fit
    from kneescope.training.engine_config import EngineConfig

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("/work/data16/A/knees"))
    parser.add_argument("--train-seed", default="16001")
    parser.add_argument("--val-seed", default="16002")
    parser.add_argument("--run", type=Path, default=Path("/work/data16/A/run"))
    parser.add_argument("--model", type=Path, default=Path("/work/data16/A/kl-mri-synth.pt"))
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--validate-every", type=int, default=50)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--init", type=Path, default=None, help="start from this model file")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--calibrate-only",
        action="store_true",
        help="only the prior correction and temperature of the finished --model",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    train = VolumeClassificationData(
        *_concat([load_knees(args.data / s, WORKING_GRID_VOX) for s in args.train_seed.split(",")])
    )
    validation = load_knees(args.data / args.val_seed, WORKING_GRID_VOX)
    print(
        f"train {len(train.labels)} knees, KL counts {np.bincount(train.labels, minlength=5)}; "
        f"validation {len(validation.labels)}, {np.bincount(validation.labels, minlength=5)} "
        f"({time.perf_counter() - start:.0f} s to load)",
        flush=True,
    )
    task = VolumeClassificationTask(
        mri_kl_network(),
        train,
        validation,
        orientation=MRI_ORIENTATION,
        seed=args.seed,
        init_path=args.init,
    )
    if args.calibrate_only:
        prior_correction(args.model, task, train.labels)
        return
    config = EngineConfig(
        iterations=args.iterations,
        batch_size=args.batch,
        lr=args.lr,
        schedule="cosine",
        warmup_iterations=args.warmup,
        precision="fp32",
        validate_every=args.validate_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        threads=1,
    )

    def progress(*_: object, **__: object) -> None:
        return None

    result = fit(
        task,
        config,
        run_dir=args.run,
        model_path=args.model,
        stop_after=args.stop_after,
        progress=progress,
    )
    for row in result.history:
        if "score" in row:
            keep = ("iteration", "loss", "accuracy", "quadratic_kappa", "ece", "temperature")
            print(json.dumps({k: row.get(k) for k in keep}), flush=True)
    print(
        f"iterations run {result.iterations_run} (from {result.resumed_from}), "
        f"{result.seconds:.0f} s; model {result.model_path}",
        flush=True,
    )
    if result.metrics is not None:
        print(json.dumps({k: v for k, v in result.metrics.values.items() if k != "confusion"}))
        print("confusion", result.metrics.values.get("confusion"))
    if result.model_path is not None:
        prior_correction(result.model_path, task, train.labels)


def prior_correction(path: Path, task: VolumeClassificationTask, train_labels: np.ndarray) -> None:
    """Balanced sampling trains for equal class frequencies; the cohort's are skewed. Adding
    the log of the training set's class frequencies to the head's bias restores them (a
    prior shift, not fitted on anything but the training labels). Kept only when it raises
    the validation quadratic kappa (then accuracy); the temperature is then refitted on the
    validation set and the model file rewritten with the new temperature and metrics."""
    import torch

    from kneescope.capabilities.classification.task import calibrated_metrics
    from kneescope.models.model_file import ModelFile, load_model_file, save_model_file

    model = load_model_file(path)
    net = model.build("cpu")
    logits = task.logits(net, torch.device("cpu"))
    truth = torch.from_numpy(np.asarray(task._val_y))
    prior = np.bincount(train_labels, minlength=len(task.classes)) / len(train_labels)
    shift = torch.from_numpy(np.log(np.maximum(prior, 1e-3)) + np.log(len(prior))).float()
    plain = calibrated_metrics(logits, truth, len(task.classes))
    shifted = calibrated_metrics(logits + shift, truth, len(task.classes))

    def key(m: object) -> tuple[float, float]:
        v = m.values  # type: ignore[attr-defined]
        return (float(v["quadratic_kappa"]), float(v["accuracy"]))

    report = {
        "without": {k: plain.values[k] for k in ("accuracy", "quadratic_kappa", "ece")},
        "with": {k: shifted.values[k] for k in ("accuracy", "quadratic_kappa", "ece")},
        "log_prior_shift": shift.tolist(),
    }
    print("prior correction on validation:", json.dumps(report), flush=True)
    if key(shifted) <= key(plain):
        print("kept the model as trained (no prior correction)")
        return
    state = dict(model.state_dict)
    state["head.bias"] = state["head.bias"] + shift
    spec = {**model.spec, "temperature": shifted.values["temperature"]}
    metrics = {"score": shifted.score, "values": dict(shifted.values)}
    training = {**model.training, "prior_correction": report}
    corrected = ModelFile(
        model.kind, model.network, spec, state, model.data_fingerprint, metrics, training
    )
    save_model_file(corrected, path)
    print(f"prior correction kept; temperature {spec['temperature']:.3f}; rewrote {path}")


def _concat(
    sets: list[VolumeClassificationData],
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    return (
        np.concatenate([s.volumes for s in sets]),
        np.concatenate([s.labels for s in sets]),
        sets[0].classes,
        tuple(n for s in sets for n in s.names),
    )


if __name__ == "__main__":
    main()
