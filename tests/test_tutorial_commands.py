"""docs/tutorial.md stays in step with the CLI: every ``kneescope`` command line of its shell
blocks names a command that exists and only options that command's ``--help`` lists, and its
run config is a valid pipeline of registered steps. (The commands were run on a synthetic
tree when the tutorial was written; this keeps a renamed option from silently breaking it.)"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.step_registry import check_step_names

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


def _blocks(language: str) -> list[str]:
    text = TUTORIAL.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def _command_lines() -> list[list[str]]:
    lines = []
    for block in _blocks("bash"):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "kneescope":
                lines.append(words[1:])
    return lines


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([command, "--help"])
    assert code == 0, f"`kneescope {command}` does not exist"
    return out.getvalue()


def test_tutorial_commands_and_options_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # help tables unwrapped: every option on one line
    lines = _command_lines()
    commands = {words[0] for words in lines}
    assert {"ingest", "convert", "run", "score", "report", "qc", "results", "export"} <= commands
    helps = {command: _help(command) for command in commands}
    for words in lines:
        options = {w.split("=", 1)[0] for w in words[1:] if w.startswith("-")}
        for option in options:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helps[words[0]]), (
                f"docs/tutorial.md: `kneescope {' '.join(words)}`: {option} is not an option "
                f"of `kneescope {words[0]}`"
            )


def test_tutorial_run_config_is_a_valid_pipeline() -> None:
    configs = [tomllib.loads(block) for block in _blocks("toml")]
    assert len(configs) == 1
    config = PipelineConfig.model_validate(configs[0])
    names = [step.name for step in config.steps]
    assert names == ["load_volume", "segment", "measure", "mri_klg"]
    check_step_names(config.steps)  # every step registered (imports none of them)
