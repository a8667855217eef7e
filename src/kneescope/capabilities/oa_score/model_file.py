"""The saved OA score model: one JSON file (no code, no pickle: it loads safely) and a card.

The file holds the feature names, the imputation medians, the standardisation (mean and
standard deviation per feature), the cumulative-logit coefficients and thresholds, the grades
seen in training and how it was fitted (cross-validated figures included). Its card
(``<name>.md`` next to it) says the same in words.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kneescope.errors import InputError, NotFoundError

FORMAT = "kneescope-oa-score"
FORMAT_VERSION = 1
MAX_MODEL_BYTES = 16 * 1024 * 1024
"""A score model file is a few kB; anything this large is not one."""


class ScoreModel(BaseModel):
    """A fitted OA score (see :mod:`kneescope.capabilities.oa_score.score`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["kneescope-oa-score"] = "kneescope-oa-score"
    version: Literal[1] = 1
    features: tuple[str, ...] = Field(min_length=1)
    sources: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    medians: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coef: tuple[float, ...]
    thresholds: tuple[float, ...] = Field(min_length=1)
    classes: tuple[float, ...] = Field(min_length=2)
    target: str = "XRKL"
    oa_grade: float = 2.0
    c: float = Field(gt=0)
    fitted_on: dict[str, object] = Field(default_factory=dict)
    kneescope_version: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ScoreModel:
        p = len(self.features)
        for name in ("medians", "means", "scales", "coef"):
            if len(getattr(self, name)) != p:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {p} features")
        if len(self.thresholds) != len(self.classes) - 1:
            raise ValueError("thresholds must be one fewer than classes")
        numbers = (*self.medians, *self.means, *self.scales, *self.coef, *self.thresholds)
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError("every number must be finite")
        if any(s <= 0 for s in self.scales):
            raise ValueError("scales must be > 0")
        if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError("thresholds must increase")
        if any(b <= a for a, b in zip(self.classes, self.classes[1:], strict=False)):
            raise ValueError("classes must increase")
        return self

    def standardise(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n, p)`` raw features (NaN where missing) -> (standardised features with the
        medians imputed, ``(n,)`` number of imputed features per row)."""
        x = np.array(x, dtype=np.float64)
        missing = ~np.isfinite(x)
        x[missing] = np.broadcast_to(np.asarray(self.medians), x.shape)[missing]
        z = (x - np.asarray(self.means)) / np.asarray(self.scales)
        return z, missing.sum(axis=1)


def model_digest(path: Path) -> str:
    """The model file's sha256 (16 hex): its provenance in results."""
    from kneescope.io.digest import file_sha256

    return file_sha256(path)[:16]


def save_model(model: ScoreModel, path: Path, card: str) -> Path:
    """Write the model (JSON) and its card (``path`` with ``.md``) atomically."""
    from kneescope.io.atomic import atomic_write_text

    atomic_write_text(path, model.model_dump_json(indent=2) + "\n")
    atomic_write_text(path.with_suffix(".md"), card)
    return path


def load_model(path: Path) -> ScoreModel:
    """Read a score model file (JSON only: nothing in it is executed).

    Raises:
        NotFoundError: no such file.
        InputError: not a regular file, too large, not JSON or not a score model.
    """
    from kneescope.io.guards import require_regular_file

    path = Path(path)
    if not path.exists():
        raise NotFoundError(
            f"score model {path} not found; give the oa_score_model.json a fit wrote"
        )
    info = require_regular_file(path, what="score model")
    if info.st_size > MAX_MODEL_BYTES:
        raise InputError(f"{path} is {info.st_size} bytes: not a score model (a few kB)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"{path} is not a score model (not JSON: {exc}); give the "
            "oa_score_model.json a fit wrote"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f"{path} is not a score model (format is not {FORMAT!r}); give the "
            "oa_score_model.json a fit wrote"
        )
    try:
        return ScoreModel.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise InputError(
            f"{path} is not a valid score model ({where}: {first['msg']}); fit it again"
        ) from None


def model_card(model: ScoreModel, summary: dict[str, object]) -> str:
    """The model card (Markdown) of a fitted score."""
    lines = [
        "# OA score model (kneescope)",
        "",
        "A holistic osteoarthritis score per knee and visit: a regularised cumulative-logit "
        f"(proportional-odds) model of the reader's KL grade (`{model.target}` of the "
        "clinical table) on the features below, standardised.",
        "",
        "- `oa_score`: the expected KL grade E[KL | features] (0 .. 4, KL grade units), a "
        "strictly increasing function of the linear predictor;",
        "- `oa_score_logit`: the linear predictor (logit units);",
        f"- `oa_probability_kl{model.oa_grade:g}`: P(KL >= {model.oa_grade:g}), the OA yes/no "
        "form.",
        "",
        f"Fitted on: {json.dumps(model.fitted_on, default=str)}",
        f"Inverse L2 strength C = {model.c:g}; grades seen: "
        f"{', '.join(f'{c:g}' for c in model.classes)}.",
        "",
        "## Features (coefficient per standard deviation)",
        "",
        "| feature | coefficient | mean | sd | median (imputed) | from |",
        "|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(model.features):
        sources = ", ".join(model.sources.get(name, (name,)))
        lines.append(
            f"| {name} | {model.coef[i]:+.3f} | {model.means[i]:.4g} | {model.scales[i]:.4g} "
            f"| {model.medians[i]:.4g} | {sources} |"
        )
    lines += ["", "## Cross-validated figures (out-of-fold)", ""]
    for key, value in summary.items():
        lines.append(f"- {key}: {value}")
    lines += [
        "",
        "## Use",
        "",
        "`kneescope score --run NAME -m oa_score_model.json` applies it to another run's "
        "results (the same feature columns must be there; a missing value of a knee is "
        "replaced by the training median and counted in `oa_imputed_features`).",
        "The file is plain JSON: it loads without executing anything.",
        "",
    ]
    return "\n".join(lines)
