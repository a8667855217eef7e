"""``kneescope models [list|show NAME]``: the models ``-m/--model`` can name: those shipped
with kneescope and those trained into the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, workspace


def models(
    action: Annotated[
        Literal["list", "show"],
        typer.Argument(
            help="list: every shipped model and the workspace's models; show: one model's card.",
            case_sensitive=False,
            metavar="ACTION",
        ),
    ] = "list",
    name: Annotated[
        str | None,
        typer.Argument(
            help="The model to show: a shipped name or alias, a name in WORKSPACE/models/, or "
            "a model file (looked up as -m/--model is).",
            show_default=False,
            metavar="NAME",
        ),
    ] = None,
    workspace_dir: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The pretrained models that come with kneescope (and the workspace's trained ones):
    `list` (name, kind, task, size, sha256, what uses it by default) or `show NAME` (its model
    card: training data, augmentation, test-set results, intended use and limits).
    `kneescope segment` uses knee-seg unless -m/--model says otherwise."""
    from kneescope.errors import InputError

    ws = workspace(workspace_dir, catalog)
    if action.lower() == "list":
        if name is not None:
            raise InputError(
                f"`kneescope models list` takes no name (got {name!r}); "
                f"use `kneescope models show {name}`"
            )
        _list(ws, as_json)
        return
    if name is None:
        raise InputError("`kneescope models show` needs a model name; see `kneescope models list`")
    _show(name, ws, as_json)


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
        "kneescope_version": e.kneescope_version,
        "file": str(model.path),
        "card": str(model.card_path),
    }


def _task(model: Any) -> str:
    mode = model.spec.get("mode")
    labels = model.spec.get("labels")
    if model.kind == "segmentation" and isinstance(labels, dict):
        return f"{mode} segmentation, {len(labels)} structures"
    return str(model.kind)


def _workspace_row(path: Path) -> dict[str, Any]:
    """A model file in ``WS/models/`` (an unreadable one says why instead of its kind)."""
    from kneescope.errors import ModelError
    from kneescope.io.digest import file_sha256
    from kneescope.models.model_file import load_model_file

    row: dict[str, Any] = {
        "name": path.stem,
        "file": str(path),
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }
    try:
        model = load_model_file(path)
    except ModelError as exc:
        return {**row, "kind": None, "task": None, "problem": str(exc)}
    return {**row, "kind": model.kind, "task": _task(model), "problem": None}


def _list(ws: Any, as_json: bool) -> None:
    from kneescope.models.pretrained import pretrained_dir, shipped_models

    folder = pretrained_dir()
    rows = [_row(m) for m in shipped_models(folder)]
    mine = sorted(ws.models_dir.glob("*.pt")) if ws.models_dir.is_dir() else []
    local = [_workspace_row(p) for p in mine]
    payload = {
        "folder": str(folder),
        "models": rows,
        "workspace_folder": str(ws.models_dir),
        "workspace_models": local,
    }

    def render(console: Any) -> None:
        def say(text: str) -> None:
            console.print(text, highlight=False, markup=False)

        say(f"shipped with kneescope ({folder}):" if rows else f"no shipped models in {folder}")
        for r in rows:
            also = f" (= {', '.join(r['aliases'])})" if r["aliases"] else ""
            say(
                f"  {r['name']}{also}: {r['kind']}, {r['task']}, {r['size_mb']:.1f} MB, "
                f"sha256 {r['sha256'][:12]}"
            )
            if r["summary"]:
                say(f"      {r['summary']}")
            if r["default_for"]:
                say(f"      default for: {', '.join(r['default_for'])}")
        if local:
            say(f"in the workspace ({ws.models_dir}; these come first for -m NAME):")
        for r in local:
            what = r["problem"] or f"{r['kind']}, {r['task']}"
            say(f"  {r['name']}: {what}, {r['size_mb']:.1f} MB, sha256 {r['sha256'][:12]}")
        say("`kneescope models show NAME` prints a model's card.")

    emit(payload, as_json, render)


def _show(name: str, ws: Any, as_json: bool) -> None:
    from kneescope.errors import ModelError, NotFoundError
    from kneescope.io.digest import file_sha256
    from kneescope.models.model_card import CardInputs, render_model_card
    from kneescope.models.model_file import load_model_file
    from kneescope.models.pretrained import find_shipped, resolve_model

    shipped = find_shipped(name)
    try:
        path = resolve_model(name, ws)
    except ModelError as exc:
        if shipped is None:  # nothing of that name anywhere: not found
            raise NotFoundError(str(exc)) from None
        raise  # a shipped file that is missing or changed
    if shipped is not None and path == shipped.path.absolute():
        card = shipped.card_text()
        row = _row(shipped)
    else:  # a trained model: a card from what its file records
        sha = file_sha256(path)
        card = render_model_card(
            load_model_file(path),
            CardInputs(name=path.stem, sha256=sha, size_bytes=path.stat().st_size, shipped=False),
        )
        row = _workspace_row(path)
    if not as_json:
        emit(None, False, lambda console: console.print(card, markup=False, highlight=False))
        return
    loaded = load_model_file(path)
    payload = {
        **row,
        "network": loaded.network.model_dump(mode="json"),
        "spec": loaded.spec,
        "data_fingerprint": loaded.data_fingerprint,
        "metrics": loaded.metrics,
        "training": loaded.training,
        "card_text": card,
    }
    emit(payload, True, lambda console: None)
