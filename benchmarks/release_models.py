"""Release the shipped models: model files + test-set reports -> ``src/kneescope/pretrained/``
and docs/models.md.

    .venv/bin/python benchmarks/release_models.py --spec release.toml [--out DIR] [--docs FILE]

The release file (TOML, or JSON when its name ends in ``.json``) names every model and what
its card says::

    hardware = "2 CPU cores (x86-64), no GPU"
    aliases = { "knee-seg" = "knee-seg-2d" }

    [[models]]
    name = "knee-seg-2d"
    file = "ws/models/knee-seg-2d.pt"           # the float32 file `kneescope train` wrote
    summary = "2D U-Net for the 9 knee structures, trained with domain randomisation."
    default_for = ["kneescope segment", "the segment step", "kneescope demo"]
    budget = "55 min wall time, 1 CPU thread"
    training_data = "24 synthetic knees (seeds 500000-500023), ..."
    results = [
      { title = "In-distribution test set (test-id)", file = "eval/knee-seg-2d-test-id.json" },
      { title = "Out-of-distribution test set (test-ood)", file = "eval/knee-seg-2d-ood.json" },
    ]
    notes = ["Without domain randomisation the same recipe gets ... (knee-seg-2d-nodr)."]

For each model it writes ``NAME.pt`` (the weights stored as float16: half the size, loaded
back as float32), ``NAME.md`` (the model card, :mod:`kneescope.models.model_card`) and the
folder's ``index.json`` (name, file, sha256, size, kind, task, summary, default-for,
aliases); the card and the index entry carry the releasing kneescope version
(``kneescope.__version__``, from the installed package's metadata, i.e. pyproject.toml);
then docs/models.md (a fixed introduction + every card). Relative paths in the release file
are relative to its folder. Every write is atomic.

Checks, each refusing the release with one line: the shipped weights together stay within
25 MB (the package's limit); each results file's ``model.sha256`` is the shipped (float16)
file's or the float32 source file's (a report of another model is refused); an alias names a
released model. A model file or results file that does not exist is refused.

Two passes are the normal way: release without ``results`` (the files exist, so the shipped
names can be evaluated: ``evaluate_segmentation.py --model knee-seg-2d``), then again with the
results. The float16 conversion is deterministic, so the second pass writes the same weights
(checked: the sha256 of each shipped file is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from kneescope.config import FROZEN
from kneescope.errors import InputError, KneescopeError
from kneescope.io.atomic import atomic_write_text
from kneescope.io.digest import file_sha256

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "src" / "kneescope" / "pretrained"
DOCS = ROOT / "docs" / "models.md"
SIZE_LIMIT_BYTES = 25_000_000
"""All shipped weights together (issue 13: at most 25 MB)."""


class ResultsFile(BaseModel):
    model_config = FROZEN
    title: str
    file: Path


class ModelRelease(BaseModel):
    model_config = FROZEN
    name: str
    file: Path
    summary: str = ""
    default_for: tuple[str, ...] = ()
    budget: str = ""
    training_data: str = ""
    results: tuple[ResultsFile, ...] = ()
    notes: tuple[str, ...] = ()
    weights_dtype: str = Field("float16", pattern="^(float16|bfloat16)$")
    task: str = ""
    intended_use: str = ""
    limits: tuple[str, ...] = ()
    usage: str = ""


class ReleaseSpec(BaseModel):
    model_config = FROZEN
    hardware: str = ""
    aliases: dict[str, str] = Field(default_factory=dict)
    models: tuple[ModelRelease, ...]


DOCS_INTRO = """# Shipped models

kneescope comes with pretrained models inside the package (knee MRI segmentation, knee
radiograph KL grading, KL grading from the whole knee MRI, full-leg landmarks)
(`kneescope/pretrained/`: no download at run time). `kneescope models list` shows them,
`kneescope models show NAME` prints a model's card (this page has every card).

| name | what | used by default by |
|---|---|---|
{table}

## Which model a command uses

`kneescope segment -m/--model M` and the `model` option of a run config's `segment` step
take, in this order: a model file's path (relative to the current folder, or to the run
config's folder), a name in `WORKSPACE/models/` (`NAME` or `NAME.pt`, written by
`kneescope train`), or a shipped model's name or alias. Without `-m` (or without the step's
`model` option) they use the shipped `knee-seg`. A shipped file is checked against the sha256
recorded in the package's `index.json` whenever it is used: a changed or damaged file is an
error (reinstall kneescope). `KNEESCOPE_PRETRAINED_DIR` names another folder of the same
layout to use instead of the package's (e.g. to try a release before installing it).

## The files

Each shipped model is `NAME.pt`, a kneescope model file (version 2: `torch.load(...,
weights_only=True)` reads it without running code) whose weights are stored as float16 (half
the size; kneescope loads them as float32), its model card `NAME.md`, and a line in
`index.json` (name, file, card, sha256, size, kind, task, summary, default-for, the kneescope
version that released it; aliases). All
shipped weights together stay within 25 MB (a test checks it). The folder is written by
`benchmarks/release_models.py` from the trained model files and the reports of
`benchmarks/evaluate_segmentation.py` on the locked test sets (docs/benchmarks.md); the test
numbers in the cards are copied from those reports as they came out.

The tests `tests/models/test_pretrained_shipped.py` load every model the index lists with
`weights_only`, compare its sha256 with the index and its card, and segment a synthetic knee
with each, asserting Dice floors stated in the test.
"""


def _read_spec(path: Path) -> ReleaseSpec:
    import json

    what = "JSON" if path.suffix == ".json" else "TOML"
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if what == "JSON" else tomllib.loads(text)
    except OSError as exc:
        raise InputError(f"cannot read release file {path} ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"release file {path} is not valid {what} ({exc})") from None
    try:
        spec = ReleaseSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"release file {path}: invalid at {where}: {first['msg']}") from None
    base = path.parent
    models = tuple(
        m.model_copy(
            update={
                "file": _under(base, m.file),
                "results": tuple(
                    r.model_copy(update={"file": _under(base, r.file)}) for r in m.results
                ),
            }
        )
        for m in spec.models
    )
    return spec.model_copy(update={"models": models})


def _under(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).absolute()


def _read_report(path: Path) -> dict[str, Any]:
    import json

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read results file {path} ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"results file {path} is not JSON ({exc})") from None
    if not isinstance(report, dict) or "summary" not in report:
        raise InputError(
            f"results file {path} is not a report of benchmarks/evaluate_segmentation.py --json"
        )
    return report


def release(
    spec: ReleaseSpec, out: Path, docs: Path | None, *, add: bool = False
) -> list[dict[str, Any]]:
    """Write the shipped folder (and docs); returns one summary row per model.

    ``add``: the release adds (or replaces) its models and keeps every other model already
    shipped in ``out`` (its file, card, index entry and aliases).
    """
    from kneescope.models.pretrained import INDEX_NAME, read_index

    names = [m.name for m in spec.models]
    if len(set(names)) != len(names):
        raise InputError(f"a model is listed twice in the release file: {names}")
    kept: list[Any] = []
    if add and (out / INDEX_NAME).is_file():
        index = read_index(out)
        kept = [e for e in index.models if e.name not in names]
        aliases = {a: t for a, t in index.aliases.items() if t not in names}
        spec = spec.model_copy(update={"aliases": {**aliases, **spec.aliases}})
    known = names + [e.name for e in kept]
    for alias, target in spec.aliases.items():
        if target not in known:
            raise InputError(f"alias {alias} names {target}, which this release does not have")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".release-") as tmp:
        rows = _stage(spec, Path(tmp), docs, kept=kept, shipped=out)
        for f in sorted(Path(tmp).iterdir()):
            if f.suffix in (".pt", ".md"):
                os.replace(f, out / f.name)
        keep = {f"{n}{ext}" for n in known for ext in (".pt", ".md")}
        for old in sorted(out.glob("*.pt")) + sorted(out.glob("*.md")):
            if old.name not in keep:
                old.unlink()  # a model dropped from the release leaves the package
        os.replace(Path(tmp) / INDEX_NAME, out / INDEX_NAME)  # last: the release is complete
        if docs is not None:
            atomic_write_text(docs, (Path(tmp) / "docs.txt").read_text(encoding="utf-8"))
    return rows


def _stage(
    spec: ReleaseSpec,
    out: Path,
    docs: Path | None,
    *,
    kept: Sequence[Any] = (),
    shipped: Path | None = None,
) -> list[dict[str, Any]]:
    """Write every file of the release into the empty folder ``out`` (and its docs page as
    ``out/docs.txt``); nothing is written anywhere else. ``kept``: index entries of models
    already in ``shipped`` that stay (their cards go into the docs page, first)."""
    from kneescope import __version__
    from kneescope.models.model_card import CardInputs, render_model_card
    from kneescope.models.model_file import load_model_file, save_model_file
    from kneescope.models.pretrained import PretrainedIndex, ShippedEntry, write_index

    staged: list[tuple[ModelRelease, Any, Path, str]] = []
    for m in spec.models:
        model = load_model_file(m.file)  # refuses a missing or broken file
        source_sha = file_sha256(m.file)
        target = out / f"{m.name}.pt"
        save_model_file(model, target, weights_dtype=m.weights_dtype)  # type: ignore[arg-type]
        staged.append((m, model, target, source_sha))
    total = sum(t.stat().st_size for _, _, t, _ in staged)
    if shipped is not None:
        total += sum((shipped / e.file).stat().st_size for e in kept)
    if total > SIZE_LIMIT_BYTES:
        raise InputError(
            f"the shipped weights would be {total / 1e6:.1f} MB, more than the "
            f"{SIZE_LIMIT_BYTES / 1e6:.0f} MB limit; ship smaller networks"
        )
    entries: list[Any] = list(kept)
    rows = []
    cards: list[str] = []
    for entry in kept:
        if shipped is not None:
            cards.append((shipped / entry.card).read_text(encoding="utf-8"))
    for m, model, target, source_sha in staged:
        sha = file_sha256(target)
        results = []
        for r in m.results:
            report = _read_report(r.file)
            evaluated = str(report.get("model", {}).get("sha256", ""))
            if evaluated not in (sha, source_sha):
                raise InputError(
                    f"results file {r.file} is of model sha256 {evaluated[:16] or 'unknown'}, "
                    f"not of {m.name} (shipped {sha[:16]}, float32 source {source_sha[:16]}); "
                    "evaluate this model"
                )
            results.append((r.title, report))
        aliases = tuple(sorted(a for a, t in spec.aliases.items() if t == m.name))
        mode = str(model.spec.get("mode", ""))
        labels = model.spec.get("labels") or {}
        task = m.task or f"{mode} knee MRI, {len(labels)} structures".strip()
        card = render_model_card(
            model,
            CardInputs(
                name=m.name,
                sha256=sha,
                size_bytes=target.stat().st_size,
                summary=m.summary,
                aliases=aliases,
                default_for=m.default_for,
                weights_dtype=m.weights_dtype,
                source_sha256=source_sha,
                budget=m.budget,
                hardware=spec.hardware,
                training_data=m.training_data,
                results=tuple(results),
                notes=m.notes,
                intended_use=m.intended_use,
                limits=m.limits,
                usage=m.usage,
                kneescope_version=__version__,
            ),
        )
        atomic_write_text(out / f"{m.name}.md", card)
        cards.append(card)
        entries.append(
            ShippedEntry(
                name=m.name,
                file=target.name,
                card=f"{m.name}.md",
                sha256=sha,
                size_bytes=target.stat().st_size,
                kind=model.kind,
                task=task,
                summary=m.summary,
                default_for=m.default_for,
                kneescope_version=__version__,
            )
        )
        rows.append(
            {
                "name": m.name,
                "sha256": sha,
                "size_mb": round(target.stat().st_size / 1e6, 2),
                "results": len(results),
            }
        )
    write_index(out, PretrainedIndex(aliases=dict(spec.aliases), models=tuple(entries)))
    if docs is not None:
        atomic_write_text(out / "docs.txt", docs_text(entries, spec.aliases, cards))
    return rows


def docs_text(entries: list[Any], aliases: dict[str, str], cards: list[str]) -> str:
    """docs/models.md: the introduction and every card (its headings one level down)."""
    table = []
    for e in entries:
        also = [a for a, t in sorted(aliases.items()) if t == e.name]
        name = f"`{e.name}`" + (f" (= {', '.join(f'`{a}`' for a in also)})" if also else "")
        table.append(f"| {name} | {e.summary or e.task} | {', '.join(e.default_for) or '-'} |")
    parts = [DOCS_INTRO.format(table="\n".join(table) or "| - | none shipped | - |").rstrip()]
    for card in cards:
        shifted = [("#" + line) if line.startswith("#") else line for line in card.splitlines()]
        parts.append("\n".join(shifted).rstrip())
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--spec", type=Path, required=True, help="the release file (TOML)")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="shipped-model folder")
    parser.add_argument("--docs", type=Path, default=DOCS, help="docs page to write")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    parser.add_argument(
        "--add", action="store_true", help="keep the models already shipped that are not listed"
    )
    args = parser.parse_args(argv)
    try:
        spec = _read_spec(args.spec.expanduser().absolute())
        rows = release(
            spec,
            args.out.expanduser().absolute(),
            None if args.no_docs else args.docs,
            add=args.add,
        )
    except KneescopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    total = sum(r["size_mb"] for r in rows)
    for r in rows:
        print(f"{r['name']}: sha256 {r['sha256']}, {r['size_mb']:.2f} MB, {r['results']} results")
    print(f"total {total:.2f} MB (limit {SIZE_LIMIT_BYTES / 1e6:.0f} MB); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
