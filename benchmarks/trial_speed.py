"""Speed of a whole ``kneescope trial`` analysis: 1,000 subjects, 5 visits, 20 endpoints.

The data are the generator's randomised cohort (``synth.endpoints.endpoint_table`` of a
``randomise = True`` cohort, treatment effect 0.5, seed ``--seed``, visits V00, V01, V03,
V05, V06), both knees per subject in a tidy csv; the 20 endpoints are the 11 measured
endpoints of the table (Wirth-Eckstein ThCtAB regions, medial/lateral JSW), WOMAC pain,
effusion and 7 noise-free ``true_`` thickness endpoints. Timed: the same call
``kneescope trial -c trial.toml -o DIR`` makes (``trial.service.run_trial``: read the table,
pick index knees, one MMRM per endpoint, responders, power, every output file and figure),
and the analysis alone (assembly + MMRMs). Target (issue 17): < 60 s on 2 cores.

    nice .venv/bin/python benchmarks/trial_speed.py --subjects 1000 --out /work/data17/D2/speed

Prints Markdown (wall and CPU seconds, per endpoint).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from kneescope.capabilities.trial.analysis import analyse
from kneescope.capabilities.trial.config import TrialConfig
from kneescope.capabilities.trial.data import assemble, read_table_file
from kneescope.capabilities.trial.service import run_trial
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.endpoints import ENDPOINTS, endpoint_table

VISITS = ("V00", "V01", "V03", "V05", "V06")
EXTRA = ("pain", "effusion")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=17010)
    parser.add_argument("--out", type=Path, default=Path("trial_speed_out"))
    args = parser.parse_args(argv)
    spec = CohortSpec(
        subjects=args.subjects,
        visits=VISITS,
        seed=args.seed,
        treatment_effect=0.5,
        randomise=True,
        mri=False,
        radiographs=False,
        full_leg=False,
    )
    t0 = time.perf_counter()
    table = endpoint_table(spec)
    true_cols = [f"true_{e}" for e in ENDPOINTS if "ThCtAB" in e][:7]
    endpoints = [*ENDPOINTS, *EXTRA, *true_cols]
    assert len(endpoints) == 20, len(endpoints)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "table.csv"
    table.loc[:, ["subject", "side", "visit", "months", "arm", "klg", "bmi", *endpoints]].to_csv(
        csv, index=False
    )
    made = time.perf_counter() - t0
    config = TrialConfig.model_validate(
        {
            "name": "speed",
            "data": {"table": str(csv)},
            "arms": {"variable": "arm", "control": "control", "treatment": "treatment"},
            "analysis": {"endpoints": endpoints, "covariates": ["bmi"], "index_by": "klg"},
            "responders": [{"endpoint": "we2008_cMFTC_ThCtAB_mm", "threshold": -0.1}],
            "power": {"target_effects": {"we2008_cMFTC_ThCtAB_mm": 0.05}},
        }
    )
    folder = args.out / "trial"
    if folder.exists():
        shutil.rmtree(folder)
    w0, c0 = time.perf_counter(), time.process_time()
    data = assemble(read_table_file(csv), config, source=str(csv))
    result = analyse(data, config)
    analysis_wall, analysis_cpu = time.perf_counter() - w0, time.process_time() - c0
    w1, c1 = time.perf_counter(), time.process_time()
    document = run_trial(
        config, folder, workspace_root=args.out, view=None, settings={"trial": "speed"}
    )
    whole_wall, whole_cpu = time.perf_counter() - w1, time.process_time() - c1
    fitted = sum(1 for e in result.endpoints if e.mmrm is not None and e.mmrm.converged)
    print(
        f"\n{args.subjects} subjects x {len(VISITS)} visits x {len(endpoints)} endpoints "
        f"(index knees: {len(data.frame)} knee-visits; {fitted} of {len(endpoints)} MMRMs "
        f"converged; table made in {made:.1f} s, not timed), {os.cpu_count()} CPUs\n"
    )
    print("| part | wall s | CPU s |")
    print("|---|---|---|")
    print(
        "| analysis (assembly + 20 MMRMs + responders + power) | "
        f"{analysis_wall:.1f} | {analysis_cpu:.1f} |"
    )
    print(
        "| whole `kneescope trial` (+ csv/parquet/json + 40 figures) | "
        f"{whole_wall:.1f} | {whole_cpu:.1f} |"
    )
    print(
        f"\nper endpoint: {analysis_wall / len(endpoints):.2f} s; files: {len(document['files'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
