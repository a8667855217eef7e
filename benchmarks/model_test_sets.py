"""Locked evaluation sets of synthetic knees: made once, hashed, never used to choose a design.

Seed ranges (each knee's parameters come from ``np.random.default_rng(seed)``):

- development and training: seeds < 1_000_000 (every other script in benchmarks/ and the
  tests stay there);
- ``val`` (validation: design choices): 2_000_000 + n, 6 DESS knees;
- ``test-id`` (locked, in distribution): 9_100_000 + n, 20 DESS knees on the OAI DESS grid
  (160 x 384 x 384 at 0.7 x 0.365 x 0.365 mm), 10 right and 10 left, KL grades 0-4 four
  times each (two right, two left);
- ``test-ood`` (locked, out of distribution): 9_200_000 + n, 24 knees, 4 of each variant
  (knee n has variant n % 6; two right, two left): ``iw-tse-fs`` and ``t1-gre`` contrasts,
  ``thick-slices`` (2x slice thickness: 80 slices of 1.4 mm), ``bias-noise`` (bias field
  strength 0.4, Rician noise 0.12), ``ghosts-gibbs`` (motion ghosts and Gibbs ringing),
  ``lesions-tears`` (bone-marrow lesions and meniscal tears, KL 2-4).

Each knee is the synthetic generator's ordinary draw for its seed, side and KL grade
(``sample_knee_params``); an out-of-distribution variant changes only its own setting.

Commands::

    .venv/bin/python benchmarks/model_test_sets.py plan --set test-ood
    .venv/bin/python benchmarks/model_test_sets.py make --set test-id --out DIR [--jobs 2]
    .venv/bin/python benchmarks/model_test_sets.py verify DIR [--sha256 HEX]

``make`` writes ``DIR/images/NAME.nii.gz`` (uint16), ``labels/`` (kneescope labels),
``tissues/`` (core.tissues values), ``params/NAME.json`` (the knee's exact parameters and
grid), ``sides.csv`` (name,side), ``knees.csv`` (seed, side, KL grade, variant, contrast,
grid), ``truth.csv`` (per knee and plate: true mean thickness, plain and visible, area and
volume) and ``manifest.json`` (SHA-256 of every file and one ``set_sha256``; record it in
docs/benchmarks.md). It refuses an existing DIR, works in ``DIR.partial`` (rerunning after an
interruption keeps the knees finished there) and renames it to DIR when the set is complete.
It also refuses to render from a source tree whose generator has uncommitted changes (the set
must be reproducible from the commit recorded in its manifest) unless ``--allow-dirty``.
``--size small`` and ``--limit N`` make reduced sets for tests; their manifest says so.

The generator must have what a set needs (tissue maps; for test-ood the contrasts, artefacts,
lesions and tears): if it lacks any, ``make`` names what is missing and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.errors import InputError, KneescopeError

SET_SEEDS = {"val": 2_000_000, "test-id": 9_100_000, "test-ood": 9_200_000}
"""First seed of each set; development and training use seeds below 1_000_000."""

OOD_VARIANTS = (
    "iw-tse-fs",
    "t1-gre",
    "thick-slices",
    "bias-noise",
    "ghosts-gibbs",
    "lesions-tears",
)
PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")
MAX_LESION_DRAWS = 1000
PROBES = (("contrast", "iw-tse-fs"), ("contrast", "t1-gre"), ("motion_ghosts", 0.5), ("gibbs", 0.3))
"""Scan settings that test-ood uses and that must change a rendered image."""
GIBBS_RANGE = (0.2, 0.4)
"""Fraction of the outer in-plane k-space removed in the ghosts-gibbs variant."""
GHOSTS_RANGE = (0.3, 0.6)
"""Motion-ghost strength (0..1) in the ghosts-gibbs variant."""
ROOT = Path(__file__).resolve().parents[1]
GENERATOR_PATHS = ("src/kneescope/synth", "src/kneescope/core")


@dataclass(frozen=True)
class KneePlan:
    """One knee of a set: its name, seed, side, KL grade and variant."""

    name: str
    seed: int
    side: str
    klg: int
    variant: str  # "dess" or one of OOD_VARIANTS


def set_plan(which: str) -> list[KneePlan]:
    """Every knee of set ``which`` (``val``, ``test-id`` or ``test-ood``), in order."""
    base = SET_SEEDS[which]
    if which == "test-id":
        return [
            KneePlan(
                f"{which}-{n:03d}",
                base + n,
                "right" if (n // 5) % 2 == 0 else "left",
                n % 5,
                "dess",
            )
            for n in range(20)
        ]
    if which == "val":
        klgs = (0, 1, 2, 3, 4, 2)
        return [
            KneePlan(f"{which}-{n:03d}", base + n, ("right", "left")[n % 2], klgs[n], "dess")
            for n in range(6)
        ]
    plans = []
    for n in range(4 * len(OOD_VARIANTS)):
        v, r = n % len(OOD_VARIANTS), n // len(OOD_VARIANTS)
        variant = OOD_VARIANTS[v]
        klg = (2, 3, 4, 3)[r] if variant == "lesions-tears" else (v + r) % 5
        plans.append(KneePlan(f"{which}-{n:03d}", base + n, ("right", "left")[r % 2], klg, variant))
    return plans


# --- what the generator offers ----------------------------------------------------------------


def _param_fields() -> dict[str, Any]:
    from kneescope.synth.params import KneeParams

    return dict(KneeParams.model_fields)


def _literal_values(field: Any) -> set[str]:
    from typing import get_args

    return {str(a) for a in get_args(field.annotation)}


def generator_lacks(which: str) -> list[str]:
    """What set ``which`` needs from kneescope.synth and it does not have yet (empty: ready)."""
    from dataclasses import fields as dc_fields

    from kneescope.synth.knee import KneeSample

    lacks = []
    if "tissues" not in {f.name for f in dc_fields(KneeSample)}:
        lacks.append("KneeSample.tissues (the tissue map, package R)")
    params = _param_fields()
    if which != "test-ood":
        return lacks
    if "contrast" not in params:
        lacks.append("KneeParams.contrast (package R)")
    else:
        missing = {"iw-tse-fs", "t1-gre"} - _literal_values(params["contrast"])
        if missing:
            lacks.append(f"KneeParams.contrast values {sorted(missing)} (package R)")
    for name, who in (
        ("motion_ghosts", "R"),
        ("gibbs", "R"),
        ("marrow_lesions", "A"),
        ("meniscal_tears", "A"),
    ):
        if name not in params:
            lacks.append(f"KneeParams.{name} (package {who})")
    return lacks


def generator_ignores() -> list[str]:
    """The test-ood scan settings that do not change a rendered image (a field that exists but
    is not rendered yet would make a silently wrong set): one small knee without noise or
    bias, rendered once plainly and once per setting; each must change the image and none
    may change the label map."""
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import SMALL, KneeParams

    plain = KneeParams(noise_sigma=0.0, bias_strength=0.0)
    ref = render_knee(plain, SMALL)
    ignored = []
    for field, value in PROBES:
        sample = render_knee(plain.model_copy(update={field: value}), SMALL)
        if np.array_equal(sample.image.array, ref.image.array):
            ignored.append(f"KneeParams.{field}={value!r} renders the same image as without it")
        if not np.array_equal(sample.labels.array, ref.labels.array):
            ignored.append(f"KneeParams.{field}={value!r} changes the label map (truth)")
    return ignored


# --- one knee ---------------------------------------------------------------------------------


def thick_grid(size: Any) -> Any:
    """``size`` with twice the slice thickness over the same field of view (half the slices)."""
    from kneescope.synth.params import SizeSpec

    n, rows, cols = size.shape
    s0, s1, s2 = size.spacing_mm
    return SizeSpec(
        name=f"{size.name}-thick", shape=(n // 2, rows, cols), spacing_mm=(2 * s0, s1, s2)
    )


def knee_params(plan: KneePlan) -> Any:
    """The :class:`KneeParams` of one planned knee (deterministic in its seed)."""
    from kneescope.synth.params import KneeParams, sample_knee_params

    rng = np.random.default_rng(plan.seed)
    if plan.variant == "lesions-tears":
        # the generator's own lesion and tear draws: the first draw of this seed's stream
        # whose knee has both (A's sampler decides how lesions and tears look)
        for attempt in range(MAX_LESION_DRAWS):
            rng = np.random.default_rng([plan.seed, attempt])
            params = sample_knee_params(rng, side=plan.side, klg=plan.klg)  # type: ignore[arg-type]
            if params.marrow_lesions and params.meniscal_tears:
                return params
        raise InputError(
            f"{plan.name}: {MAX_LESION_DRAWS} draws of sample_knee_params(klg={plan.klg}) gave "
            "no knee with both marrow lesions and meniscal tears; check the generator's sampler"
        )
    params = sample_knee_params(rng, side=plan.side, klg=plan.klg)  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    if plan.variant in ("iw-tse-fs", "t1-gre"):
        changes["contrast"] = plan.variant
    elif plan.variant == "bias-noise":
        changes.update(bias_strength=0.4, noise_sigma=0.12)
    elif plan.variant == "ghosts-gibbs":
        changes.update(
            motion_ghosts=float(rng.uniform(*GHOSTS_RANGE)), gibbs=float(rng.uniform(*GIBBS_RANGE))
        )
    if not changes:
        return params
    return KneeParams.model_validate({**params.model_dump(), **changes})


def knee_grid(plan: KneePlan, size_name: str) -> Any:
    from kneescope.synth.params import size_spec

    size = size_spec(size_name)
    return thick_grid(size) if plan.variant == "thick-slices" else size


def render_one(args: tuple[KneePlan, str, str]) -> dict[str, Any]:
    """Render one knee into the staging folder; ``params/NAME.json`` is written last."""
    from kneescope.io import write_nifti
    from kneescope.io.atomic import atomic_write_text
    from kneescope.synth.knee import render_knee

    plan, size_name, folder = args
    stage = Path(folder)
    done = stage / "params" / f"{plan.name}.json"
    grid = knee_grid(plan, size_name)
    if done.is_file():  # finished by an earlier, interrupted make
        record = dict(json.loads(done.read_text(encoding="utf-8")))
        if record.get("seed") != plan.seed or record.get("grid", {}).get("name") != grid.name:
            raise InputError(
                f"{done} is from another set or grid (seed {record.get('seed')}); remove "
                f"{stage} and make the set again"
            )
        return record
    t0 = time.perf_counter()
    params = knee_params(plan)
    sample = render_knee(params, grid)
    for sub, volume in (("images", sample.image), ("labels", sample.labels)):
        write_nifti(volume, stage / sub / f"{plan.name}.nii.gz")
    if plan.variant == "lesions-tears":
        from kneescope.core import tissues as tt

        drawn = set(np.unique(sample.tissues.array).tolist())
        want = {
            "marrow lesion": {tt.FEMUR_LESION, tt.TIBIA_LESION},
            "meniscal tear": {tt.MEDIAL_MENISCUS_TEAR, tt.LATERAL_MENISCUS_TEAR},
        }
        absent = [what for what, values in want.items() if not drawn & values]
        if absent:
            raise InputError(
                f"{plan.name}: its parameters have marrow lesions and meniscal tears but the "
                f"rendered tissue map has no {' and no '.join(absent)} voxel; the renderer "
                "does not draw them yet"
            )
    write_nifti(sample.tissues, stage / "tissues" / f"{plan.name}.nii.gz")
    truth = {
        plate: {
            "thickness_mean_mm": t.thickness_mean_mm,
            "thickness_mean_visible_mm": t.thickness_mean_visible_mm,
            "visible_threshold_mm": t.visible_threshold_mm,
            "area_mm2": t.area_mm2,
            "volume_mm3": t.volume_mm3,
        }
        for plate, t in sample.truth.plates.items()
    }
    record = {
        "name": plan.name,
        "seed": plan.seed,
        "side": plan.side,
        "klg": plan.klg,
        "variant": plan.variant,
        "grid": grid.model_dump(mode="json"),
        "params": params.model_dump(mode="json"),
        "truth": {
            "plates": truth,
            "meniscus_volume_mm3": dict(sample.truth.meniscus_volume_mm3),
            "extrusion_mm": dict(sample.truth.extrusion_mm),
        },
        "render_seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(done, json.dumps(record, indent=1) + "\n")
    print(f"{plan.name}: {plan.variant} {grid.shape} in {record['render_seconds']} s", flush=True)
    return record


# --- the set ----------------------------------------------------------------------------------


def source_state() -> dict[str, Any]:
    """The git commit of this source tree and the generator files with uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", *GENERATOR_PATHS)
    dirty = [] if not status else [line[3:] for line in status.splitlines()]
    return {"commit": commit or "unknown", "generator_uncommitted": dirty}


def make_set(
    which: str,
    out: Path,
    *,
    size_name: str = "full",
    limit: int | None = None,
    jobs: int = 1,
    allow_dirty: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Render set ``which`` into ``out`` and lock it; returns its manifest."""
    import kneescope
    from kneescope.inference.evaluation import write_set_manifest
    from kneescope.io.csv_table import write_csv_table

    out = out.expanduser().absolute()
    if out.exists():
        raise InputError(f"{out} exists; a locked set is made once: choose a new folder")
    lacks = generator_lacks(which)
    if lacks:
        raise InputError(
            f"the generator lacks what set {which} needs: {'; '.join(lacks)}; "
            "make the set when those have landed"
        )
    if which == "test-ood":
        ignored = generator_ignores()
        if ignored:
            raise InputError(
                f"the generator does not render what set {which} needs: {'; '.join(ignored)}; "
                "make the set when the renderer uses them"
            )
    state = source_state()
    if state["generator_uncommitted"] and not allow_dirty:
        raise InputError(
            "the generator has uncommitted changes ("
            + ", ".join(state["generator_uncommitted"][:4])
            + "); commit them first (the manifest records the commit) or pass --allow-dirty"
        )
    plans = set_plan(which)
    if limit is not None:
        plans = plans[:limit]
    stage = out.with_name(out.name + ".partial")
    for sub in ("images", "labels", "tissues", "params"):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    work = [(p, size_name, str(stage)) for p in plans]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            records = list(pool.map(render_one, work))
    else:
        records = [render_one(w) for w in work]
    log(f"rendered {len(records)} knees in {time.perf_counter() - t0:.0f} s")

    write_csv_table(stage / "sides.csv", [{"name": r["name"], "side": r["side"]} for r in records])
    write_csv_table(
        stage / "knees.csv",
        [
            {
                "name": r["name"],
                "seed": r["seed"],
                "side": r["side"],
                "klg": r["klg"],
                "variant": r["variant"],
                "contrast": r["params"].get("contrast", "dess"),
                "grid": r["grid"]["name"],
                "shape": "x".join(str(v) for v in r["grid"]["shape"]),
                "spacing_mm": "x".join(f"{v:.4f}" for v in r["grid"]["spacing_mm"]),
            }
            for r in records
        ],
    )
    write_csv_table(
        stage / "truth.csv",
        [
            {"name": r["name"], "plate": plate, **r["truth"]["plates"][plate]}
            for r in records
            for plate in PLATES
        ],
    )
    complete = limit is None and size_name == "full"
    info = {
        "name": which,
        "complete": complete,
        "knees": len(records),
        "first_seed": SET_SEEDS[which],
        "size": size_name,
        "kneescope_version": kneescope.__version__,
        "source": state,
        "made_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "benchmarks/model_test_sets.py make --set " + which,
    }
    manifest = write_set_manifest(stage, info)
    os.rename(stage, out)  # the set appears whole, or not at all
    return manifest


def print_plan(which: str) -> None:
    print("| knee | seed | side | KL grade | variant |")
    print("|---|---|---|---|---|")
    for p in set_plan(which):
        print(f"| {p.name} | {p.seed} | {p.side} | {p.klg} | {p.variant} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Locked evaluation sets of synthetic knees (see the module docstring)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_plan = sub.add_parser("plan", help="List the knees of a set (seed, side, KL grade, variant).")
    p_plan.add_argument("--set", dest="which", choices=sorted(SET_SEEDS), required=True)
    p_make = sub.add_parser("make", help="Render a set into a new folder and lock it.")
    p_make.add_argument("--set", dest="which", choices=sorted(SET_SEEDS), required=True)
    p_make.add_argument("-o", "--output", "--out", dest="out", type=Path, required=True)
    p_make.add_argument("-j", "--jobs", type=int, default=1, help="knees rendered in parallel")
    p_make.add_argument("--size", default="full", help="grid (tests: small); default full")
    p_make.add_argument("--limit", type=int, default=None, help="only the first N knees (tests)")
    p_make.add_argument("--allow-dirty", action="store_true")
    p_verify = sub.add_parser("verify", help="Check a set against its manifest.")
    p_verify.add_argument("folder", type=Path)
    p_verify.add_argument("--sha256", default=None, help="the set_sha256 the docs record")
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            print_plan(args.which)
        elif args.command == "make":
            if args.jobs < 1 or (args.limit is not None and args.limit < 1):
                raise InputError("--jobs and --limit must be at least 1")
            manifest = make_set(
                args.which,
                args.out,
                size_name=args.size,
                limit=args.limit,
                jobs=args.jobs,
                allow_dirty=args.allow_dirty,
            )
            print(
                f"{args.out}: {manifest['set']['knees']} knees, set_sha256 {manifest['set_sha256']}"
            )
        else:
            from kneescope.inference.evaluation import verify_set_manifest

            manifest = verify_set_manifest(args.folder, args.sha256)
            print(f"{args.folder}: intact, set_sha256 {manifest['set_sha256']}")
    except KneescopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
