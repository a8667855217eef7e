"""A small finished run for the report tests, with known truth: toy knees
(:mod:`kneescope.biomarkers.knee_phantom`: constant cartilage thickness, known in closed form)
drawn as images, ingested through a manifest with their label maps and a clinical table,
and run through ``load_labels -> measure`` in this process.

The knees (subject, side, visit):

- ``9000001`` right ``V00``: healthy (femoral cartilage 2.4 mm), KL 1;
- ``9000001`` right ``V01``: the same knee a year later with thinner cartilage (femoral
  1.6 mm, tibial plates 0.5 mm thinner), KL 2;
- ``9000001`` left ``V00``: its lateral meniscus erased from the label map, so measure flags
  it (``qc_missing_lateral_meniscus``; QC fails), KL 0; its series description is a hostile
  header string (``HOSTILE_DESCRIPTION``: markup that must be shown as text);
- ``9000002`` right ``V00``: thick cartilage (femoral 2.8 mm), KL 3.

:func:`build_report_run` builds it once per process (about 10-20 s on 2 cores) and returns
the same :class:`ReportRun` to every later caller; tests treat its folders as read-only
(copy before writing into the workspace; reports go to their own tmp folders).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kneescope.biomarkers.knee_phantom import (
    COMPACT_OFFSET_MM,
    ToyKneeSpec,
    render_toy_knee,
)
from kneescope.core import Volume
from kneescope.io import write_volume

RUN_NAME = "report"
HOSTILE_DESCRIPTION = 'Sag DESS <script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
"""The series description of the flagged knee: markup a page must show as text."""

SPACING_MM = (0.9, 0.7, 0.7)
SHAPE = (98, 143, 129)  # the toy knee with a margin, fine enough for meniscal extrusion


@dataclass(frozen=True)
class KneeTruth:
    """One knee-visit of the fixture and what is known about it.

    Attributes:
        subject, side, visit: the knee and visit.
        spec: the toy knee's geometry (cartilage thicknesses in mm).
        kl: the KL grade written into the catalog (``XRKL``).
        flagged: True when its label map was damaged (lateral meniscus erased).
        description: the series description in the catalog.
        item_id: the run's item id (``series-<id>``).
    """

    subject: str
    side: str
    visit: str
    spec: ToyKneeSpec
    kl: int
    flagged: bool
    description: str
    item_id: str = ""


@dataclass(frozen=True)
class ReportRun:
    """The finished run: ``workspace`` (catalog, images, ``runs/<name>/``), its name, its
    folder, the knees with their truth by item id, and the item id of the knee whose series
    description is :data:`HOSTILE_DESCRIPTION` (``hostile_item``)."""

    workspace: Path
    name: str
    run_dir: Path
    knees: dict[str, KneeTruth]
    hostile_item: str

    @property
    def flagged_items(self) -> list[str]:
        """Item ids of the knees whose QC must fail."""
        return [i for i, k in self.knees.items() if k.flagged]


KNEES = (
    KneeTruth("9000001", "right", "V00", ToyKneeSpec(femoral_thickness_mm=2.4), 1, False, ""),
    KneeTruth(
        "9000001",
        "right",
        "V01",
        ToyKneeSpec(
            femoral_thickness_mm=1.6,
            medial_tibial_thickness_mm=1.3,
            lateral_tibial_thickness_mm=1.9,
        ),
        2,
        False,
        "",
    ),
    KneeTruth("9000001", "left", "V00", ToyKneeSpec(), 0, True, HOSTILE_DESCRIPTION),
    KneeTruth("9000002", "right", "V00", ToyKneeSpec(femoral_thickness_mm=2.8), 3, False, ""),
)

_INTENSITY = np.array([20, 300, 750, 300, 750, 750, 300, 750, 150, 150], np.float32)
"""Image grey value of each kneescope label (bone 300, cartilage 750, menisci 150)."""

_BUILT: dict[str, ReportRun] = {}


def _image(labels: Volume, seed: int) -> Volume:
    """An MR-like image of a label map: a grey value per structure plus noise (int16)."""
    rng = np.random.default_rng(seed)
    grey = _INTENSITY[labels.array] + rng.normal(0.0, 25.0, labels.array.shape)
    return Volume(np.clip(grey, 0, 2000).astype(np.int16), labels.affine_ras, {"side": labels.side})


def _cli(argv: list[str]) -> None:
    from kneescope.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    # 1: some items failed measure's QC (the flagged knee), which is expected here
    assert code in (0, 1), (argv, code, err.getvalue()[-2000:])


def _set_description(workspace: Path, item_id: str, text: str) -> None:
    """Give the series of ``item_id`` (``series-<id>``) the description ``text`` in the
    catalog (as a DICOM SeriesDescription would arrive)."""
    from sqlalchemy import update

    from kneescope.catalog.database import Catalog
    from kneescope.catalog.schema import Series
    from kneescope.workspace import Workspace

    series_id = int(item_id.removeprefix("series-"))
    catalog = Catalog.for_workspace(Workspace.resolve(workspace), create=False)
    try:
        with catalog.session() as session:
            session.execute(update(Series).where(Series.id == series_id).values(description=text))
            session.commit()
    finally:
        catalog.close()


def _build(root: Path) -> ReportRun:
    data, ws = root / "data", root / "ws"
    data.mkdir(parents=True)
    lines = ["path,subject,visit,side,sequence,label_path"]
    for n, knee in enumerate(KNEES):
        toy = render_toy_knee(
            knee.spec,
            side=knee.side,  # type: ignore[arg-type]
            spacing_mm=SPACING_MM,
            shape=SHAPE,
            centre_offset_mm=COMPACT_OFFSET_MM,
        )
        labels = toy.labels
        if knee.flagged:
            damaged = labels.array.copy()
            damaged[damaged == 9] = 0  # lateral meniscus erased
            labels = labels.with_array(damaged)
        stem = f"{knee.subject}_{knee.visit}_{knee.side}"
        write_volume(_image(labels, n), data / f"{stem}.nii.gz")
        write_volume(labels, data / f"{stem}_labels.nii.gz")
        lines.append(
            f"{stem}.nii.gz,{knee.subject},{knee.visit},{knee.side},DESS,{stem}_labels.nii.gz"
        )
    (data / "manifest.csv").write_text("\n".join(lines) + "\n")
    clinical = ["ID,SIDE,V00XRKL,V01XRKL"]
    for subject in sorted({k.subject for k in KNEES}):
        for side, code in (("right", 1), ("left", 2)):
            grades = {k.visit: str(k.kl) for k in KNEES if k.subject == subject and k.side == side}
            if grades:
                clinical.append(f"{subject},{code},{grades.get('V00', '')},{grades.get('V01', '')}")
    (root / "kXR.csv").write_text("\n".join(clinical) + "\n")
    _cli(["ingest", str(data), "-w", str(ws), "-j", "1"])
    _cli(["ingest", str(root / "kXR.csv"), "-w", str(ws), "--kind", "clinical"])
    config = root / "run.toml"
    config.write_text(
        f'name = "{RUN_NAME}"\n[items]\ncatalog = {{ sequence = "DESS" }}\n'
        '[[steps]]\nname = "load_labels"\n[[steps]]\nname = "measure"\n'
        '[executor]\nkind = "local"\n'
    )
    _cli(["run", "-w", str(ws), "--config", str(config)])
    run_dir = ws / "runs" / RUN_NAME
    table = pd.read_parquet(run_dir / "results.parquet")
    knees: dict[str, KneeTruth] = {}
    hostile = ""
    for knee in KNEES:
        row = table.loc[
            (table["subject"] == knee.subject)
            & (table["visit"] == knee.visit)
            & (table["side"] == knee.side)
        ]
        assert len(row) == 1, (knee, table[["item_id", "subject", "visit", "side"]])
        item_id = str(row["item_id"].iloc[0])
        if knee.description:
            _set_description(ws, item_id, knee.description)
            hostile = item_id
        knees[item_id] = KneeTruth(**{**knee.__dict__, "item_id": item_id})
    return ReportRun(ws, RUN_NAME, run_dir, knees, hostile)


def build_report_run(factory: pytest.TempPathFactory) -> ReportRun:
    """The fixture's run, built on the first call of this process (in a folder of
    ``factory``) and the same object on every later call."""
    if "run" not in _BUILT:
        _BUILT["run"] = _build(factory.mktemp("report_run"))
    return _BUILT["run"]
