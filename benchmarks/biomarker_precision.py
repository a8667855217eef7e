"""Rescan precision of every biomarker of ``kneescope measure`` on synthetic knees.

Each knee (seed, KLG, side) is rendered ``--rescans`` times by the generator
(:func:`kneescope.synth.rescan.rescan_params`: the same knee repositioned, i.e. a new
obliquity and field-of-view offset, with new noise and bias field) on the ``--size`` grid
(default ``full``: the OAI DESS grid 160 x 384 x 384, 0.7 x 0.3646 x 0.3646 mm), and every
rescan's label map (the generator's, rendered in that pose) is measured by ``measure_knee``.
Per knee and biomarker: SD and CV over its rescans; per biomarker: the RMS over knees
(:func:`kneescope.biomarkers.change.rescan_precision`).

Targets (issue 14): plate RMS CV <= 0.5 %, subregion RMS CV <= 1.5 % (thickness columns).

    .venv/bin/python benchmarks/biomarker_precision.py --knees 4 --rescans 4 \
        --cache /work/cache14/D --markdown /work/cache14/precision_latest.md \
        [--precision-table src/kneescope/biomarkers/precision_synth_dess.json]

Rendered label maps are cached under ``--cache`` (one .npz per rescan, named by the knee,
the grid and a hash of the rescan's parameters and of the generator's rendering code), so a
rerun after a change of the measurement only measures. Prints Markdown (also written to
``--markdown``).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kneescope.biomarkers import measure_knee
from kneescope.biomarkers.change import Precision, PrecisionTable, rescan_precision
from kneescope.core import Volume
from kneescope.io.atomic import atomic_write_text
from kneescope.synth.params import KneeParams, SizeSpec, sample_knee_params, size_spec
from kneescope.synth.rescan import rescan_params

CASES = ((0, 2, "right"), (1, 4, "left"), (2, 3, "right"), (3, 0, "left"), (4, 1, "right"))
"""(seed, KLG, side) of the knees, in order (the accuracy benchmark's knees)."""

PLATE_REGIONS = ("MT", "LT", "cMF", "cLF", "TrMF", "TrLF", "pMF", "pLF", "P")
AGGREGATES = ("MFTC", "LFTC", "cMFTC")
OLD_PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")
RENDER_SOURCES = ("anatomy.py", "knee.py", "render.py", "sdf.py")
"""The kneescope.synth modules whose code decides a rendered label map."""
PLATE_TARGET_PCT = 0.5
SUBREGION_TARGET_PCT = 1.5


def knee_params(seed: int, klg: int, side: str) -> KneeParams:
    """The benchmark knee ``(seed, klg, side)`` as first scanned."""
    return sample_knee_params(np.random.default_rng(seed), side=side, klg=klg)  # type: ignore[arg-type]


def renderer_version() -> str:
    """Hash of the generator's rendering code (a cached label map of older code is stale)."""
    import kneescope.synth as synth

    folder = Path(synth.__file__).parent
    text = b"".join((folder / f).read_bytes() for f in RENDER_SOURCES)
    return hashlib.sha256(text).hexdigest()[:12]


def cached_labels(
    params: KneeParams, size: SizeSpec, cache: Path | None, name: str
) -> tuple[Volume, dict[str, float]]:
    """The generator's label map of ``params`` on ``size`` (rendered, or read from
    ``cache``), and the rendered label volumes (label value as str -> mm^3)."""
    from kneescope.synth.knee import render_knee

    digest = hashlib.sha256((params.model_dump_json() + renderer_version()).encode())
    digest = digest.hexdigest()[:12]
    path = None if cache is None else cache / f"{name}_{size.name}_{digest}.npz"
    meta = {"side": params.side}
    if path is not None and path.exists():
        with np.load(path) as f:
            vols = dict(zip(f["vol_keys"].tolist(), f["vol_values"].tolist(), strict=True))
            return Volume(f["labels"], f["affine"], meta), vols
    t0 = time.time()
    sample = render_knee(params, size)
    vols = dict(sample.truth.label_volumes_mm3)
    print(f"<!-- rendered {name} on {size.name} in {time.time() - t0:.0f} s -->", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez_compressed(
            tmp,
            labels=sample.labels.array,
            affine=sample.labels.affine_ras,
            vol_keys=np.array(list(vols)),
            vol_values=np.array(list(vols.values())),
            params=np.array(params.model_dump_json()),
        )
        os.replace(tmp, path)
    return Volume(sample.labels.array, sample.labels.affine_ras, meta), vols


def measure_rescans(
    knees: int, rescans: int, size: SizeSpec, cache: Path | None
) -> list[list[dict[str, float]]]:
    """Measured values of every rescan of every knee: [knee][rescan] -> column -> value."""
    out = []
    for seed, klg, side in CASES[:knees]:
        base = knee_params(seed, klg, side)
        scans = []
        for r in range(1, rescans + 1):
            labels, _ = cached_labels(rescan_params(base, r), size, cache, f"s{seed}_r{r}")
            m = measure_knee(labels, side)  # type: ignore[arg-type]
            scans.append({k: float(v) for k, v in m.values.items()})
        out.append(scans)
    return out


def column_group(name: str) -> str:
    """The target group of ``name``: "plate", "aggregate", "subregion" or "other"."""
    we = re.fullmatch(r"we2008_([A-Za-z]+)_.*", name)
    if we:
        region = we.group(1)
        if region in PLATE_REGIONS:
            return "plate"
        return "aggregate" if region in AGGREGATES else "subregion"
    if any(name.startswith(f"{p}_cartilage_thickness_") for p in OLD_PLATES):
        return "plate"
    plate_cols = (
        "cartilage_volume_mm3",
        "cartilage_articular_area_mm2",
        "subchondral_bone_area_mm2",
    )
    if any(name == f"{p}_{c}" for p in OLD_PLATES for c in plate_cols):
        return "plate"
    if re.fullmatch(
        r"(femoral|medial_tibial|lateral_tibial)_cartilage_\w+_(thickness_mean_mm|volume_mm3)", name
    ):
        return "subregion"
    return "other"


def is_thickness(name: str) -> bool:
    return name.endswith(("_ThCtAB_mm", "_ThCcAB_mm", "_thickness_mean_mm"))


def fmt(x: float, digits: int = 2) -> str:
    return "-" if not math.isfinite(x) else f"{x:.{digits}f}"


def per_knee_cvs(values: Sequence[Sequence[dict[str, float]]], name: str) -> list[float]:
    out = []
    for scans in values:
        v = np.array([s.get(name, math.nan) for s in scans])
        m = float(np.mean(v))
        out.append(100.0 * float(np.std(v, ddof=1)) / abs(m) if abs(m) > 1e-9 else math.nan)
    return out


def report(values: list[list[dict[str, float]]], prec: dict[str, Precision], header: str) -> str:
    lines = [header, ""]
    lines.append(
        "Targets (thickness columns, RMS over knees of the per-knee CV): plates "
        f"<= {PLATE_TARGET_PCT} %, subregions <= {SUBREGION_TARGET_PCT} %."
    )
    lines.append("")
    lines.append(
        "| group | quantity | columns | max RMS CV % (column) | median RMS CV % | target % | met |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    quantities = {
        "thickness (ThCcAB / ThCtAB / plate and region means)": is_thickness,
        "volume (VC, _volume_mm3)": lambda n: n.endswith(("_VC_mm3", "_volume_mm3")),
        "areas (tAB, cAB, articular, subchondral)": lambda n: n.endswith(
            ("_tAB_mm2", "_cAB_mm2", "_articular_area_mm2", "_subchondral_bone_area_mm2")
        ),
    }
    for group, target in (
        ("plate", PLATE_TARGET_PCT),
        ("aggregate", PLATE_TARGET_PCT),
        ("subregion", SUBREGION_TARGET_PCT),
    ):
        for qname, pick in quantities.items():
            cols = [n for n, p in prec.items() if column_group(n) == group and pick(n)]
            cvs = [(prec[n].cv_pct, n) for n in cols if math.isfinite(prec[n].cv_pct)]
            if not cvs:
                continue
            worst = max(cvs)
            med = float(np.median([c for c, _ in cvs]))
            judged = qname.startswith("thickness")
            met = ("yes" if worst[0] <= target else "no") if judged else "(not a target)"
            lines.append(
                f"| {group} | {qname} | {len(cvs)} | {worst[0]:.2f} (`{worst[1]}`) | {med:.2f} "
                f"| {target if judged else '-'} | {met} |"
            )
    lines.append("")
    lines.append(
        "Every column (RMS CV over knees, per-knee CVs, RMS SD in the column's unit, "
        "mean over all scans):"
    )
    lines.append("")
    lines.append("| column | group | RMS CV % | per-knee CV % | RMS SD | mean |")
    lines.append("|---|---|---|---|---|---|")
    for name in sorted(prec, key=lambda n: (column_group(n), n)):
        unit = name.endswith(("_mm", "_mm2", "_mm3", "_pct"))
        if column_group(name) == "other" and not is_thickness(name) and not unit:
            continue
        p = prec[name]
        knee_cv = " / ".join(fmt(c) for c in per_knee_cvs(values, name))
        mean = float(np.nanmean([s.get(name, math.nan) for scans in values for s in scans]))
        lines.append(
            f"| `{name}` | {column_group(name)} | {fmt(p.cv_pct)} | {knee_cv} | {p.sd:.4f} "
            f"| {fmt(mean, 3)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--knees", type=int, default=4, help=f"1..{len(CASES)}")
    ap.add_argument("--rescans", type=int, default=4)
    ap.add_argument("--size", default="full")
    ap.add_argument("--cache", type=Path, default=None, help="folder for rendered label maps")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the report here")
    ap.add_argument(
        "--precision-table",
        type=Path,
        default=None,
        help="write the SDs as a precision table (JSON) for measure --longitudinal",
    )
    args = ap.parse_args()
    if not 1 <= args.knees <= len(CASES) or args.rescans < 2:
        ap.error(f"--knees 1..{len(CASES)} and --rescans >= 2")
    size = size_spec(args.size)
    t0 = time.time()
    commit = subprocess.run(  # the code as imported now, not as the tree is at the end
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = _dirty()
    values = measure_rescans(args.knees, args.rescans, size, args.cache)
    prec = rescan_precision(values)
    knees = ", ".join(f"seed {s} KLG {k} {side}" for s, k, side in CASES[: args.knees])
    cmd = (
        f".venv/bin/python benchmarks/biomarker_precision.py --knees {args.knees} "
        f"--rescans {args.rescans} --size {args.size}"
    )
    header = (
        f"## Rescan precision ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"commit {commit or '?'}{' + uncommitted changes' if dirty else ''})\n\n"
        f"Command: `{cmd}`. Knees: {knees}; {args.rescans} rescans each (new obliquity, "
        f"offset, noise, bias), grid {size.name} {size.shape} at "
        f"{' x '.join(f'{s:.4g}' for s in size.spacing_mm)} mm; the generator's label maps. "
        f"{time.time() - t0:.0f} s."
    )
    text = report(values, prec, header)
    print(text)
    if args.markdown is not None:
        atomic_write_text(args.markdown, text)
    if args.precision_table is not None:
        source = (
            f"rescan SDs (RMS over {args.knees} synthetic knees x {args.rescans} rescans, "
            f"label maps on the {size.name} grid {size.shape} at "
            f"{' x '.join(f'{s:.4g}' for s in size.spacing_mm)} mm) measured by `{cmd}` "
            f"at commit {commit or '?'}"
        )
        atomic_write_text(args.precision_table, PrecisionTable(prec, source).to_json())


def _dirty() -> bool:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return bool(out.strip())


if __name__ == "__main__":
    main()
