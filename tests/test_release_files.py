"""The release files agree with the package: LICENSE is the licence pyproject.toml declares,
CITATION.cff and CHANGELOG.md name the installed version, NOTICE names every shipped model,
every shipped model card and its index entry carry the version that released it, and a run's
results table and the catalog's export carry the version that computed each row."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import kneescope
from kneescope.cli.app import main
from kneescope.models.pretrained import pretrained_dir, read_index

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _changelog_versions() -> list[str]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\] - \d{4}-\d{2}-\d{2}$", text, flags=re.M)


def test_license_file_is_the_licence_pyproject_declares() -> None:
    declared = _pyproject()["license"]
    assert declared == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole licence, not a stub
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in notice


def test_installed_version_is_pyproject_version() -> None:
    assert kneescope.__version__ == _pyproject()["version"]


def test_citation_cff_names_the_package_version_and_licence() -> None:
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == kneescope.__version__
    assert cff["license"] == "Apache-2.0"
    assert cff["type"] == "software"
    assert cff["title"].startswith("kneescope")
    assert cff["authors"] and all(("name" in a) or ("family-names" in a) for a in cff["authors"])
    assert isinstance(cff["message"], str) and cff["message"].strip()
    for ref in cff.get("references", []):
        assert {"type", "title", "authors"} <= set(ref)


def test_changelog_has_a_dated_section_for_the_version() -> None:
    versions = _changelog_versions()
    assert kneescope.__version__ in versions
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "## [Unreleased]" in text


def test_every_shipped_model_names_its_release_version_in_card_and_index() -> None:
    folder = pretrained_dir()
    index = read_index(folder)
    released = set(_changelog_versions())
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    for entry in index.models:
        assert entry.kneescope_version in released, (entry.name, entry.kneescope_version)
        card = (folder / entry.card).read_text(encoding="utf-8")
        rows = re.findall(r"^\| kneescope version \| (.+) \|$", card, flags=re.M)
        assert rows == [entry.kneescope_version], entry.name
        assert entry.name in notice, f"NOTICE does not name shipped model {entry.name}"
    listed = _json(["models", "list"])
    assert isinstance(listed, dict)
    shown = {m["name"]: m["kneescope_version"] for m in listed["models"]}
    assert shown == {e.name: e.kneescope_version for e in index.models}


def _json(argv: list[str]) -> object:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    assert code == 0, argv
    return json.loads(out.getvalue())


def test_run_results_and_catalog_export_carry_the_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lines = ["item_id,subject,visit,side,series,path"]
    for i in range(3):
        np.save(data / f"v{i}.npy", np.full((3, 4, 5), float(i + 1), dtype=np.float32))
        lines.append(f"S{i}-V00,S{i},V00,right,uid.{i},v{i}.npy")
    (data / "items.csv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "ver"\n[items]\nlist = "{data / "items.csv"}"\n'
        '[[steps]]\nname = "load_array"\n[[steps]]\nname = "array_stats"\n'
        '[executor]\nkind = "local"\n'
    )
    ws = tmp_path / "ws"
    _json(["run", "-c", str(config), "-w", str(ws)])
    table = pd.read_parquet(ws / "runs" / "ver" / "results.parquet")
    assert len(table) == 3
    assert (table["kneescope_version"] == kneescope.__version__).all()
    assert table["mean"].tolist() == sorted(table["mean"].tolist())  # real values, 1..3
    exported = tmp_path / "values.csv"
    _json(["results", "--run", "ver", "-o", str(exported), "-w", str(ws)])
    values = pd.read_csv(exported)
    assert len(values) >= 3
    assert set(values["kneescope_version"]) == {kneescope.__version__}
