"""``kneescope models [list|show NAME]``: the pretrained models shipped with kneescope."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import JsonOpt, emit


def models(
    action: Annotated[
        Literal["list", "show"],
        typer.Argument(
            help="list: every shipped model; show: one model's card.",
            case_sensitive=False,
            metavar="ACTION",
        ),
    ] = "list",
    name: Annotated[
        str | None,
        typer.Argument(
            help="The model to show (a name or alias from `kneescope models list`).",
            show_default=False,
            metavar="NAME",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The pretrained models that come with kneescope: `list` (name, kind, task, size, sha256,
    what uses it by default) or `show NAME` (its model card: training data, augmentation,
    test-set results, intended use and limits). `kneescope segment` uses knee-seg unless
    -m/--model says otherwise."""
    from kneescope.errors import InputError

    if action.lower() == "list":
        if name is not None:
            raise InputError(
                f"`kneescope models list` takes no name (got {name!r}); "
                f"use `kneescope models show {name}`"
            )
        _list(as_json)
        return
    if name is None:
        raise InputError("`kneescope models show` needs a model name; see `kneescope models list`")
    _show(name, as_json)


def _row(model: Any) -> dict[str, Any]:
    e = model.entry
    return {
        "name": e.name,
        "aliases": list(model.aliases),
        "kind": e.kind,
        "task": e.task,
        "summary": e.summary,
        "size_mb": round(e.size_bytes / 1e6, 2),
        "size_bytes": e.size_bytes,
        "sha256": e.sha256,
        "default_for": list(e.default_for),
        "file": str(model.path),
        "card": str(model.card_path),
    }


def _list(as_json: bool) -> None:
    from kneescope.models.pretrained import pretrained_dir, shipped_models

    folder = pretrained_dir()
    rows = [_row(m) for m in shipped_models(folder)]
    payload = {"folder": str(folder), "models": rows}

    def render(console: Any) -> None:
        if not rows:
            console.print(f"no shipped models in {folder}", highlight=False, markup=False)
            return
        for r in rows:
            also = f" (= {', '.join(r['aliases'])})" if r["aliases"] else ""
            console.print(
                f"{r['name']}{also}: {r['kind']}, {r['task']}, {r['size_mb']:.1f} MB, "
                f"sha256 {r['sha256'][:12]}",
                highlight=False,
                markup=False,
            )
            if r["summary"]:
                console.print(f"    {r['summary']}", highlight=False, markup=False)
            if r["default_for"]:
                console.print(
                    f"    default for: {', '.join(r['default_for'])}", highlight=False, markup=False
                )
        console.print(
            "`kneescope models show NAME` prints a model's card.", highlight=False, markup=False
        )

    emit(payload, as_json, render)


def _show(name: str, as_json: bool) -> None:
    from kneescope.models.pretrained import shipped_model

    model = shipped_model(name)
    card = model.card_text()
    if not as_json:
        emit(None, False, lambda console: console.print(card, markup=False, highlight=False))
        return
    from kneescope.models.model_file import load_model_file

    loaded = load_model_file(model.verified_path())
    payload = {
        **_row(model),
        "network": loaded.network.model_dump(mode="json"),
        "spec": loaded.spec,
        "data_fingerprint": loaded.data_fingerprint,
        "metrics": loaded.metrics,
        "training": loaded.training,
        "card_text": card,
    }
    emit(payload, True, lambda console: None)
