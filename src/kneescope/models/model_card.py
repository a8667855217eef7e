"""Model cards: a Markdown page per shipped model, from its model file and test-set results.

:func:`render_model_card` turns what the model file records (network, labels and grid,
training config and seeds, augmentation, data fingerprint, validation metrics) plus what the
caller knows (budget and hardware, the training data's description, the test-set reports of
``benchmarks/evaluate_segmentation.py``) into one deterministic Markdown text: the same inputs
give the same bytes (no dates, dict keys in a fixed order). The fixed sections (intended use,
limits) say what every shipped model is and is not for.

``benchmarks/release_models.py`` writes the cards into ``kneescope/pretrained/`` and
docs/models.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kneescope.models.model_file import ModelFile

INTENDED_USE = (
    "Segmenting the knee's bones, cartilage plates and menisci in sagittal 3D knee MRI "
    "(water-excitation DESS and similar) for research: cohort measurements of cartilage "
    "thickness and volume and meniscal position with `kneescope run` / `kneescope segment`, "
    "with every knee's QC flags (`qc_ok`) read beside its numbers. A starting point for "
    "fine-tuning on a site's own labelled scans (`kneescope train`)."
)

LIMITS = (
    "- **Trained on synthetic images only** (kneescope's knee generator, with domain "
    "randomisation); **not validated on real scans**. The test-set figures below are on "
    "synthetic knees, drawn from seeds and scan settings never used in development; they "
    "say nothing certain about real MRI.",
    "- Not a medical device; not for diagnosis or any clinical decision.",
    "- Expects one knee per image, a sagittal stack covering the joint. Other anatomy, "
    "other orientations of the field of view or implants are outside what it has seen.",
    "- Knees that fail QC (`qc_ok = false` in the results table) must not be reported as "
    "results; look at their label maps.",
)


@dataclass(frozen=True)
class CardInputs:
    """What a model card needs besides the model file.

    Attributes:
        name: the shipped name (``knee-seg-2d``).
        sha256: SHA-256 of the shipped weights file (64 hex).
        size_bytes: that file's size.
        summary: one sentence on what the model is.
        aliases: other names that resolve to it (``knee-seg``).
        default_for: what uses it when no model is given.
        weights_dtype: how the shipped file stores its weights (``float16``, ``float32``).
        source_sha256: SHA-256 of the float32 model file it was made from ("" if the same).
        budget: the training budget in words (``55 min wall time, 2 CPU threads``).
        hardware: the machine it was trained on.
        training_data: the training data in words (generator, seeds, knees, grid).
        results: ``(title, report)`` pairs: reports of ``evaluate_segmentation.py --json``.
        notes: further Markdown paragraphs (e.g. how it compares with a baseline).
        shipped: a model kneescope ships (with the fixed intended-use and limits sections);
            False for a user's own model file (its card says only what the file records).
        kneescope_version: the kneescope version that released the model (``0.1.0``; the
            package's ``kneescope.__version__`` at release); "" leaves the row out.
    """

    name: str
    sha256: str
    size_bytes: int
    summary: str = ""
    aliases: tuple[str, ...] = ()
    default_for: tuple[str, ...] = ()
    weights_dtype: str = "float32"
    source_sha256: str = ""
    budget: str = ""
    hardware: str = ""
    training_data: str = ""
    results: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    shipped: bool = True
    intended_use: str = ""
    limits: tuple[str, ...] = ()
    usage: str = ""
    kneescope_version: str = ""


def render_model_card(model: ModelFile, card: CardInputs) -> str:
    """The Markdown model card of ``model`` (deterministic; ends with one newline).

    Args:
        model: the model file's contents (:func:`~kneescope.models.model_file.load_model_file`).
        card: the facts the file does not hold (:class:`CardInputs`).
    """
    spec = model.spec
    training = model.training
    config = _dict(training.get("config"))
    engine = _dict(training.get("engine"))
    lines: list[str] = [f"# {card.name}", ""]
    if card.summary:
        lines += [card.summary, ""]
    lines += _identity(model, card)
    if card.shipped:
        intended = card.intended_use or INTENDED_USE
        limits = card.limits or LIMITS
        lines += ["", "## Intended use", "", intended, "", "## Limits", "", *limits, ""]
    else:
        lines += ["", "Not a shipped model: this card says only what its model file records.", ""]
    lines += ["## Training", ""]
    lines += _training(model, card, config, engine)
    lines += ["", "## Results on the locked test sets", ""]
    if card.results:
        for title, report in card.results:
            lines += _results(title, report)
    else:
        lines += ["Not evaluated on a test set yet.", ""]
    for note in card.notes:
        lines += [note.strip(), ""]
    usage = card.usage or f"kneescope segment -m {card.name} -o OUT IMAGE..."
    lines += ["## Use", "", "```", usage, "```", ""]
    if spec.get("side_canonical"):
        lines += [
            "The model is side-canonical: it needs each knee's side (DICOM Laterality, the "
            "catalog, or `--side`).",
            "",
        ]
    return "\n".join(_trim(lines)).rstrip("\n") + "\n"


def _classifier_rows(model: ModelFile) -> list[tuple[str, str]]:
    spec = model.spec
    net = model.network
    crop = spec.get("crop_mm")
    orientation = spec.get("orientation")
    if orientation is not None:  # a volume classifier: the whole volume, reoriented
        what = "one 3D volume"
        view = (
            f"the whole volume, reoriented to {orientation} (a left knee mirrored) and "
            "resampled to the input"
        )
    else:
        what = "paired: each image with its pair" if net.paired else "one image"
        view = "-" if crop is None else f"{_num(crop, 1)} mm square"
    return [
        ("kind", f"{model.kind} ({what})"),
        ("classes", ", ".join(str(c) for c in spec.get("classes", ()))),
        ("input", _vox(spec.get("input_size_vox"))),
        ("field of view", view),
        ("temperature", _num(spec.get("temperature", 1.0))),
    ]


def _segmentation_rows(model: ModelFile) -> list[tuple[str, str]]:
    spec = model.spec
    labels = spec.get("labels") or {}
    names = ", ".join(str(labels[k]) for k in sorted(labels, key=lambda k: int(k)))
    return [
        ("kind", f"{model.kind} ({spec.get('mode', '?')})"),
        ("structures", f"{len(labels)}: {names}" if labels else "-"),
        ("label scheme", str(spec.get("label_scheme", "-"))),
    ]


def _segmentation_grid_rows(model: ModelFile) -> list[tuple[str, str]]:
    spec = model.spec
    return [
        ("working spacing", _spacing(spec.get("spacing_mm"))),
        ("orientation", str(spec.get("orientation", "-"))),
        ("inference window", _vox(spec.get("roi_size_vox"))),
        ("side-canonical", "yes" if spec.get("side_canonical") else "no"),
    ]


def _identity(model: ModelFile, card: CardInputs) -> list[str]:
    spec = model.spec
    net = model.network
    params = sum(int(t.numel()) for t in model.state_dict.values() if t.is_floating_point())
    classifier = model.kind == "classification"
    rows = [
        ("names", ", ".join([card.name, *card.aliases])),
        *(_classifier_rows(model) if classifier else _segmentation_rows(model)),
        ("network", f"{net.name}, features {list(net.features)}, {params:,} parameters"),
        *([] if classifier else _segmentation_grid_rows(model)),
        ("normalisation", _compact(spec.get("normalisation"))),
        ("default for", ", ".join(card.default_for) or "-"),
        (
            "weights file",
            f"{card.name}.pt, {card.size_bytes / 1e6:.2f} MB, weights stored as "
            f"{card.weights_dtype} (loaded as float32)",
        ),
        ("sha256", f"`{card.sha256}`"),
    ]
    if card.source_sha256 and card.source_sha256 != card.sha256:
        rows.append(("made from", f"float32 model file sha256 `{card.source_sha256}`"))
    if card.kneescope_version:
        rows.append(("kneescope version", card.kneescope_version))
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _training(
    model: ModelFile, card: CardInputs, config: dict[str, Any], engine: dict[str, Any]
) -> list[str]:
    training = model.training
    lines: list[str] = []
    if card.training_data:
        lines += [f"- **Data**: {card.training_data}"]
    train_cases = training.get("train_cases")
    val_cases = training.get("val_cases")
    if isinstance(train_cases, list) and isinstance(val_cases, list):
        lines += [
            f"- **Cases**: {len(train_cases)} for training, {len(val_cases)} for validation "
            f"({', '.join(str(v) for v in val_cases) or 'none'})."
        ]
    if model.data_fingerprint:
        lines += [f"- **Data fingerprint**: `{model.data_fingerprint}`"]
    if engine:
        keys = ("seed", "iterations", "batch_size", "lr", "schedule", "precision", "ema_decay")
        lines += ["- **Engine**: " + _pairs({k: engine.get(k) for k in keys})]
    if "iterations" in training:
        lines += [f"- **Iterations run**: {training['iterations']}"]
    plan = _dict(training.get("plan"))
    if plan:
        lines += ["- **Step plan**: " + _compact(plan)]
    if config:
        augment = config.get("augment")
        dr = config.get("domain_randomisation")
        aug = "spatial and intensity augmentation" if augment else "no augmentation"
        lines += [f"- **Augmentation**: {aug} (`augment = {str(bool(augment)).lower()}`)"]
        if dr:
            lines += ["- **Domain randomisation**: " + _compact(dr)]
        else:
            lines += ["- **Domain randomisation**: none"]
        task_keys = ("mode", "patch_size_vox", "spacing_mm", "val_fraction", "class_weights")
        lines += ["- **Task config**: " + _pairs({k: config.get(k) for k in task_keys})]
    if card.budget:
        lines += [f"- **Budget**: {card.budget}"]
    if card.hardware:
        lines += [f"- **Hardware**: {card.hardware}"]
    dice = _validation_dice(model)
    if dice:
        lines += [
            "- **Final validation Dice** (development knees, used to choose the design): "
            + ", ".join(f"{k} {_num(v)}" for k, v in dice.items())
        ]
    return lines or ["No training record in the model file."]


def _validation_dice(model: ModelFile) -> dict[str, object]:
    """Structure name -> the last validation's Dice (the training record keeps a list in
    label order)."""
    values = _dict(model.training.get("validation")).get("dice")
    labels = _dict(model.spec.get("labels"))
    names = [str(labels[k]) for k in sorted(labels, key=lambda k: int(k))]
    if not isinstance(values, list) or len(values) != len(names):
        return {}
    return dict(zip(names, values, strict=True))


def _results(title: str, report: Mapping[str, Any]) -> list[str]:
    info = _dict(report.get("set"))
    summary = _dict(report.get("summary"))
    model = _dict(report.get("model"))
    head = f"### {title}"
    lines = [head, ""]
    facts = []
    if info.get("name"):
        facts.append(f"set `{info['name']}`")
    if summary.get("knees") is not None:
        facts.append(f"{summary['knees']} knees, {summary.get('qc_ok', '?')} QC-pass")
    if info.get("set_sha256"):
        facts.append(f"set sha256 `{str(info['set_sha256'])[:16]}`")
    if model.get("sha256"):
        facts.append(f"evaluated weights sha256 `{str(model['sha256'])[:16]}`")
    if facts:
        lines += ["; ".join(facts) + ".", ""]
    dice = _dict(summary.get("dice"))
    hd95 = _dict(summary.get("hd95_mm"))
    if dice:
        lines += [
            "| structure | Dice mean | Dice worst knee | HD95 mm mean | HD95 mm worst knee |",
            "|---|---|---|---|---|",
        ]
        for name, d in dice.items():
            h = _dict(hd95.get(name))
            lines.append(
                f"| {name} | {_num(_dict(d).get('mean'))} | {_num(_dict(d).get('worst'))} "
                f"| {_num(h.get('mean'), 2)} | {_num(h.get('worst'), 2)} |"
            )
        lines.append("")
    thickness = _dict(summary.get("thickness_error_mm"))
    if thickness:
        lines += [
            "| plate | thickness error mm, mean abs | bias | worst knee |",
            "|---|---|---|---|",
        ]
        for plate, e in thickness.items():
            e = _dict(e)
            lines.append(
                f"| {plate} | {_num(e.get('mean'))} | {_num(e.get('bias'), 3, sign=True)} "
                f"| {_num(e.get('worst'))} |"
            )
        lines.append("")
    variants = _dict(report.get("by_variant"))
    if variants:
        structures = list(dice)
        lines += [
            "Dice mean per variant:",
            "",
            "| variant | " + " | ".join(structures) + " |",
            "|---|" + "---|" * len(structures),
        ]
        for variant, s in variants.items():
            vd = _dict(_dict(s).get("dice"))
            cells = [_num(_dict(vd.get(n)).get("mean")) for n in structures]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _num(value: object, digits: int = 3, *, sign: bool = False) -> str:
    if isinstance(value, str):
        return value  # "inf" as the evaluation JSON writes it
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a"
    v = float(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _spacing(value: object) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " x ".join(f"{float(v):.3f}" for v in value) + " mm"
    return "-"


def _vox(value: object) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " x ".join(str(int(v)) for v in value) + " voxels"
    return "-"


def _compact(value: object) -> str:
    """Inline JSON with sorted keys (deterministic)."""
    if value is None or value == {}:
        return "-"
    return "`" + json.dumps(value, sort_keys=True, separators=(", ", ": ")) + "`"


def _pairs(values: Mapping[str, Any]) -> str:
    return (
        ", ".join(
            f"{k} {_compact(v) if isinstance(v, dict | list) else v}"
            for k, v in values.items()
            if v is not None
        )
        or "-"
    )


def _trim(lines: list[str]) -> list[str]:
    """No two blank lines in a row."""
    out: list[str] = []
    for line in lines:
        if line == "" and out and out[-1] == "":
            continue
        out.append(line)
    return out
