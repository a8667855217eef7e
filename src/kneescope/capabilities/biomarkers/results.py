"""Every column of the ``measure`` step, with its unit.

Built from the same definitions :func:`kneescope.biomarkers.measure_knee` builds its row
from (plates, sub-regions, menisci, label names, QC flags). The unit is
also the name's suffix (``_mm``, ``_mm2``, ``_mm3``, ``_pct``). A test measures a knee and
checks that its row has exactly these columns; the runner refuses any other.
"""

from __future__ import annotations

from kneescope.biomarkers.measure import BONES, PLATES
from kneescope.biomarkers.menisci import MENISCI
from kneescope.capabilities.biomarkers.config import VOLUME_STRUCTURES
from kneescope.cohort.result_schema import ResultColumn
from kneescope.core import we2008
from kneescope.core.labels import KNEE_LABELS

CAPABILITY = "biomarkers"

THICKNESS_STATS = {
    "mean": "area-weighted mean",
    "median": "area-weighted median",
    "p5": "area-weighted 5th percentile of",
    "p95": "area-weighted 95th percentile of",
    "max": "maximum",
}
"""Thickness statistics per plate (``<plate>_cartilage_thickness_<stat>_mm``)."""


def _words(name: str) -> str:
    return name.replace("_", " ")


def _plate_columns(plate: str) -> list[ResultColumn]:
    pre = f"{plate}_cartilage"
    cartilage = f"{_words(plate)} cartilage"
    columns = [ResultColumn(f"{pre}_volume_mm3", "float", "mm3", f"{cartilage} volume")]
    columns += [
        ResultColumn(f"{pre}_thickness_{stat}_mm", "float", "mm", f"{what} {cartilage} thickness")
        for stat, what in THICKNESS_STATS.items()
    ]
    columns += [
        ResultColumn(f"{pre}_articular_area_mm2", "float", "mm2", f"{cartilage} surface area"),
        ResultColumn(
            f"{plate}_denuded_bone_area_mm2",
            "float",
            "mm2",
            f"bone area under the {_words(plate)} plate not covered by cartilage",
        ),
        ResultColumn(
            f"{plate}_subchondral_bone_area_mm2",
            "float",
            "mm2",
            f"bone area under the {_words(plate)} plate (covered and denuded)",
        ),
    ]
    for region in we2008.PLATE_REGIONS[plate]:
        columns += _we2008_columns(region)
    return columns


def _we2008_columns(region: str) -> list[ResultColumn]:
    """The Chondrometrics quantities of one Wirth-Eckstein (2008) region or aggregate."""
    if region in we2008.AGGREGATES:
        tib, fem = we2008.AGGREGATES[region]
        where = f"{region} ({tib} + {fem}; thicknesses summed)"
    else:
        where = region
    return [
        ResultColumn(we2008.column(region, q), "float", unit, f"{what}, Wirth-Eckstein {where}")
        for q, (unit, what) in we2008.QUANTITIES.items()
    ]


def _meniscus_columns(name: str) -> list[ResultColumn]:
    return [
        ResultColumn(f"{name}_meniscus_volume_mm3", "float", "mm3", f"{name} meniscus volume"),
        ResultColumn(
            f"{name}_meniscus_extrusion_mm",
            "float",
            "mm",
            f"{name} meniscus extrusion beyond the osteophyte-free tibial rim, mid-coronal",
        ),
        ResultColumn(
            f"{name}_meniscus_extrusion_max_mm",
            "float",
            "mm",
            f"{name} meniscus extrusion, largest over the meniscal body (3D)",
        ),
        ResultColumn(
            f"{name}_meniscus_extrusion_mean_mm",
            "float",
            "mm",
            f"{name} meniscus extrusion, mean over the meniscal body (3D)",
        ),
        ResultColumn(
            f"{name}_tibial_coverage_pct",
            "float",
            "%",
            f"share of the {name} tibial plateau covered by the meniscus",
        ),
    ]


def _flag(name: str, description: str) -> ResultColumn:
    return ResultColumn(name, "bool", "", description)


def _qc_columns() -> list[ResultColumn]:
    columns: list[ResultColumn] = []
    for structure in KNEE_LABELS.labels.values():
        columns += [
            _flag(f"qc_missing_{structure}", f"no {_words(structure)} in the label map"),
            ResultColumn(
                f"qc_extra_components_{structure}",
                "int",
                "1",
                f"sizeable pieces of {_words(structure)} besides the largest",
            ),
        ]
    columns += [
        _flag(f"qc_implausible_volume_{s}", f"{_words(s)} volume outside its plausible range")
        for s in VOLUME_STRUCTURES
    ]
    columns += [
        _flag(f"qc_implausible_thickness_{p}", f"{_words(p)} cartilage thickness implausible")
        for p in PLATES
    ]
    columns += [
        _flag("qc_side_mismatch", "the side given and the side the anatomy tells differ"),
        _flag("qc_side_unverified", "the anatomy could not confirm the side (informative)"),
    ]
    columns += [
        _flag(f"qc_cartilage_off_bone_{p}", f"{_words(p)} cartilage does not lie on its bone")
        for p in PLATES
    ]
    columns += [
        _flag(
            f"qc_not_labelled_{structure}",
            f"the label scheme has no {_words(structure)} label: its values are empty "
            "(informative)",
        )
        for structure in KNEE_LABELS.labels.values()
    ]
    columns.append(
        _flag(
            "qc_tibial_split_unclear",
            "a combined tibial cartilage label had no clear gap between its plates",
        )
    )
    columns += [
        _flag("qc_femur_below_tibia", "the femur is not above the tibia"),
        _flag("qc_orientation_unknown", "the file states no orientation"),
        _flag("qc_extrusion_grid_too_coarse", "the grid is too coarse for meniscal extrusion"),
        ResultColumn("qc_unmeasured_values", "int", "1", "biomarkers that could not be measured"),
        _flag("qc_ok", "no QC flag raised and every labelled structure's biomarker measured"),
    ]
    return columns


def _measure_results() -> tuple[ResultColumn, ...]:
    columns = [
        ResultColumn("measured_side", "str", "", "side the knee was measured as (right, left)"),
        ResultColumn(
            "side_from_anatomy", "str", "", "side the anatomy tells (empty when it cannot)"
        ),
    ]
    columns += [
        ResultColumn(
            f"{bone}_bone_volume_mm3",
            "float",
            "mm3",
            f"{bone} volume inside the field of view (voxel count x voxel volume)",
        )
        for bone in BONES
    ]
    for plate in PLATES:
        columns += _plate_columns(plate)
    for aggregate in we2008.AGGREGATES:
        columns += _we2008_columns(aggregate)
    for name in MENISCI:
        columns += _meniscus_columns(name)
    columns += _qc_columns()
    columns.append(ResultColumn("qc_reasons", "str", "", "raised QC flags' reasons in words"))
    return tuple(columns)


MEASURE_RESULTS: tuple[ResultColumn, ...] = _measure_results()
"""Columns of ``measure``."""
