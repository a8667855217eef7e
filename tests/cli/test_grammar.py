"""One option grammar for every command, checked on the real CLI.

Walks every command's parameters (``typer.main.get_command``) and asserts: inputs are
``-i/--input``, outputs ``-o/--output``, a trained model ``-m/--model``, config files
``-c/--config``, the workspace ``-w/--workspace``, parallelism ``-j/--jobs``; a value from a
fixed set shows its choices (never a bare ``<str>``); every parameter has help; every long
option name of the released CLI still parses (old scripts keep working).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer.main

from kneescope.cli.app import app

COMMAND = typer.main.get_command(app)
COMMANDS: dict[str, Any] = dict(COMMAND.commands)  # type: ignore[attr-defined]

# role -> (short name, canonical long name, accepted long aliases)
ROLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "input": ("-i", "--input", ()),
    "output": ("-o", "--output", ("--out",)),
    "model": ("-m", "--model", ()),
    "config": ("-c", "--config", ()),
    "workspace": ("-w", "--workspace", ()),
    "jobs": ("-j", "--jobs", ()),
}
# Python parameter names that mean a role (whatever the option is called on the command line).
ROLE_OF_PARAM = {
    "input_opt": "input",
    "inputs": "input",
    "out": "output",
    "output": "output",
    "model": "model",
    "config": "config",
    "config_file": "config",
    "workspace": "workspace",
    "workspace_dir": "workspace",
    "jobs": "jobs",
}

# Options whose value is free text by nature (ids, codes, URLs, sizes, devices). Anything
# else shown as <str> must list its choices instead. Each entry says why it is free.
FREE_TEXT: dict[tuple[str, str], str] = {
    ("*", "--catalog"): "an SQLAlchemy URL",
    ("demo", "--visits"): "a comma list of visit codes (V00,V01,...)",
    ("demo", "--model"): "a model file, a name in WORKSPACE/models/ or a shipped model's name",
    ("synth", "--visits"): "a comma list of visit codes (V00,V01,...)",
    ("catalog", "--visit"): "a visit code, V00 or 1 (normalised)",
    ("catalog", "--subject"): "a subject code",
    ("catalog", "--variable"): "a clinical variable name or * ? pattern",
    ("catalog", "--sequence"): "sequence names are open: a manifest may bring its own",
    ("catalog", "--modality"): "DICOM modality codes are open (MR, CR, DX, OT, ...)",
    ("export", "series"): "a catalog id or SeriesInstanceUID",
    ("export", "--run"): "a run name",
    ("plan", "--model"): "a model file or a name in WORKSPACE/models/",
    ("xray", "--model"): "a model file, a name in WORKSPACE/models/ or a shipped model's name",
    ("models", "name"): "a shipped model's name or alias, a name in WORKSPACE/models/ or a file",
    ("measure", "--labels"): "a scheme name (listed in its metavar) or a JSON scheme file",
    ("plan", "--shape"): "a size like 160x384x384",
    ("plan", "--budget"): "a size with a unit (11GB) or host",
    ("plan", "--spacing"): "a spacing like 0.7x0.365x0.365",
    ("segment", "--series"): "catalog ids or SeriesInstanceUIDs",
    ("segment", "--subject"): "a subject code",
    ("segment", "--visit"): "a visit code",
    ("segment", "--device"): "auto, cpu, cuda or cuda:N (N is open)",
    ("status", "--run"): "a run name",
    ("results", "--run"): "run names",
    ("results", "--capability"): "capability names are open: a plug-in brings its own",
    ("score", "--run"): "run names",
    ("report", "--run"): "a run name",
    ("qc", "--run"): "a run name",
    ("score", "--feature"): "result column name patterns (mjsw_*_mm): columns are open",
}
TEXT_METAVARS = ("<str>", "<list[str]>", "TEXT")

# Every long option of the CLI before the grammar (kneescope 0.1.0 as released); each must
# still be accepted so that existing scripts keep working.
RELEASED_LONG_OPTIONS: dict[str, list[str]] = {
    command: names.split()
    for command, names in {
        "demo": "--subjects --visits --size --seed --workspace --catalog --json",
        "synth": "--out --subjects --visits --size --seed --treatment-effect --jobs --no-mri "
        "--no-xray --json",
        "ingest": "--kind --jobs --workspace --catalog --json",
        "catalog": "--visit --side --sequence --status --modality --kind --subject --limit "
        "--summary --workspace --catalog --json",
        "export": "--format --out --labels --workspace --catalog --json",
        "convert": "--jobs --force --workspace --catalog --json",
        "plan": "--model --input --budget --spacing --mode --optimizer --device --precision "
        "--workspace --catalog --json",
        "train": "--config --iterations --stop-after --threads --workspace --catalog --json",
        "segment": "--model --out --series --subject --visit --side --tta --cascade "
        "--probabilities --device --precision --overlap --blend --no-cleanup --workspace "
        "--catalog --json",
        "measure": "--side --out --maps --workspace --catalog --json",
        "run": "--config --executor --dry-run --workspace --catalog --json",
        "status": "--run --workspace --catalog --json",
    }.items()
}


def _names(param: Any) -> list[str]:
    return [*param.opts, *param.secondary_opts]


def _options() -> list[tuple[str, Any]]:
    return [
        (name, p)
        for name, cmd in COMMANDS.items()
        for p in cmd.params
        if p.param_type_name == "option"
    ]


def _label(param: Any) -> str:
    longs = [n for n in _names(param) if n.startswith("--")]
    return longs[0] if longs else param.name


def _metavar(command: str, param: Any) -> str:
    cmd = COMMANDS[command]
    ctx = cmd.make_context(command, ["--help"], resilient_parsing=True)
    return str(param.display_type(ctx))


def test_every_released_command_is_there() -> None:
    assert set(RELEASED_LONG_OPTIONS) <= set(COMMANDS)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_options_use_the_one_name(role: str) -> None:
    """An option that plays a role (by its names or its parameter) has the short and the
    canonical long name, and a role's short name means nothing else."""
    short, long, aliases = ROLES[role]
    wrong = []
    for command, p in _options():
        names = set(_names(p))
        by_name = bool(names & {short, long, *aliases})
        by_param = ROLE_OF_PARAM.get(p.name) == role
        if (by_name or by_param) and not {short, long} <= names:
            wrong.append(f"{command} {sorted(names)} ({p.name}) should be {short}/{long}")
    assert not wrong, "\n".join(wrong)


def test_every_command_with_a_workspace_has_w_and_every_other_has_none() -> None:
    for command, cmd in COMMANDS.items():
        names = {n for p in cmd.params for n in _names(p)}
        if command == "synth":  # writes a cohort folder, no workspace
            assert "--workspace" not in names
            continue
        assert {"-w", "--workspace"} <= names, command


def test_fixed_choices_are_listed_not_str() -> None:
    """A value from a fixed set shows its choices in --help (``<right|left>``), not <str>.

    Only the options in FREE_TEXT (ids, codes, URLs, sizes) may take free text."""
    bare = []
    for command, cmd in COMMANDS.items():
        for p in cmd.params:
            if _metavar(command, p) not in TEXT_METAVARS:
                continue
            label = _label(p)
            if (command, label) not in FREE_TEXT and ("*", label) not in FREE_TEXT:
                bare.append(f"{command} {label}: {_metavar(command, p)}")
    assert not bare, "options with a fixed set of values must list it:\n" + "\n".join(bare)


def test_free_text_list_has_no_stale_entries() -> None:
    labels = {(c, _label(p)) for c, cmd in COMMANDS.items() for p in cmd.params}
    stale = [key for key in FREE_TEXT if key[0] != "*" and key not in labels]
    assert not stale


def test_every_parameter_and_command_has_help() -> None:
    missing = [
        f"{command} {_label(p)}"
        for command, cmd in COMMANDS.items()
        for p in cmd.params
        if not (getattr(p, "help", None) or "").strip()
    ]
    assert not missing, "parameters without help: " + ", ".join(missing)
    assert all((cmd.help or "").strip() for cmd in COMMANDS.values())


@pytest.mark.parametrize("command", sorted(RELEASED_LONG_OPTIONS))
def test_released_long_names_are_still_accepted(command: str) -> None:
    names = {n for p in COMMANDS[command].params for n in _names(p)}
    missing = [n for n in RELEASED_LONG_OPTIONS[command] if n not in names]
    assert not missing, f"{command} lost {missing}"


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        # old spelling -> the value lands in the same parameter as the new spelling
        ("synth", ["--out", "c"], {"out": Path("c")}),
        ("synth", ["-o", "c"], {"out": Path("c")}),
        ("export", ["7", "--out", "x.nii.gz"], {"out": Path("x.nii.gz")}),
        ("segment", ["a.nii.gz", "--out", "s", "--model", "m"], {"out": Path("s")}),
        ("segment", ["a.nii.gz", "-i", "b.nii.gz", "-o", "s", "-m", "m"], {"model": Path("m")}),
        ("measure", ["a.nii.gz", "--out", "t.csv"], {"out": Path("t.csv")}),
        ("measure", ["-i", "a.nii.gz", "-o", "t.csv"], {"input_opt": [Path("a.nii.gz")]}),
        ("plan", ["--model", "unet3d-nnunet", "--input", "64x64x64"], {"input_shape": "64x64x64"}),
        (
            "plan",
            ["--network", "unet3d-nnunet", "--shape", "64x64x64"],
            {"input_shape": "64x64x64"},
        ),
        ("train", ["--config", "t.toml"], {"config_file": Path("t.toml")}),
        ("train", ["-c", "t.toml"], {"config_file": Path("t.toml")}),
        ("run", ["-c", "r.toml", "--executor", "SLURM"], {"executor": "slurm"}),
        ("catalog", ["--status", "OK", "--kind", "mri"], {"status": "ok", "kind": "mri"}),
    ],
)
def test_old_and_new_spellings_parse(
    command: str, args: list[str], expected: dict[str, Any]
) -> None:
    ctx = COMMANDS[command].make_context(command, args)
    for key, value in expected.items():
        assert ctx.params[key] == value


@pytest.mark.slow  # three measure runs; the shared grammar rules are checked by default
def test_measure_positional_and_input_options_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Positional label maps and repeated -i/--input are one list, positional first."""
    from kneescope.biomarkers.knee_phantom import (
        OBLIQUE_DEG,
        render_compact_toy_knee,
        rotation_from_euler_deg,
    )
    from kneescope.cli.app import main
    from kneescope.io import write_volume

    knee = render_compact_toy_knee(rotation=rotation_from_euler_deg(*OBLIQUE_DEG))
    paths = [write_volume(knee.labels, tmp_path / f"knee{n}_R.nii.gz") for n in range(3)]
    argv = ["measure", str(paths[0]), "-i", str(paths[1]), "--input", str(paths[2]), "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["labelmap"] for row in rows] == [str(p) for p in paths]
    assert main(["measure", "--json"]) == 2  # nothing to measure: a one-line error
    assert capsys.readouterr().err.startswith("error: nothing to measure")


def test_plan_network_choices_are_the_presets() -> None:
    from kneescope.cli.cmd_plan import NETWORKS
    from kneescope.models import PRESETS

    assert tuple(sorted(PRESETS)) == NETWORKS
    assert "unet3d-nnunet" in _metavar("plan", _param("plan", "--network"))


def _param(command: str, long: str) -> Any:
    return next(p for p in COMMANDS[command].params if long in _names(p))


@pytest.mark.parametrize("command", sorted(typer.main.get_command(app).commands))  # type: ignore[attr-defined]
def test_flags_show_no_value_in_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An on/off flag takes no value: --help must not print ``--json <bool>``."""
    from kneescope.cli.app import main

    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "--help" in text
    assert "<bool>" not in text
