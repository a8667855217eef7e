"""The ``kneescope`` console script.

Command modules import only light modules at top level; heavy libraries (torch, monai, dask,
SimpleITK) are imported inside the commands, so ``kneescope --help`` answers quickly.
Library errors (:class:`~kneescope.errors.KneescopeError`) become one line on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import typer
import typer.main

from kneescope import __version__

app = typer.Typer(
    name="kneescope",
    help=(
        "Knee-OA imaging cohorts -> catalog, store, segmentations, biomarkers and scores.\n\n"
        "Start with `kneescope demo`. Commands that use a workspace take --workspace/-w "
        "(default: $KNEESCOPE_WORKSPACE or the current folder).\n\n"
        "One option grammar: -i/--input inputs, -o/--output outputs, -m/--model a trained "
        "model, -c/--config a config file, -j/--jobs worker processes, --overwrite to replace "
        "an output, --json for JSON. Exit codes: 0 ok, 1 failed, 2 bad input, 3 not found, "
        "130 interrupted. Every command on one page: docs/cli.md."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kneescope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0,
        "-v",
        "--verbose",
        count=True,
        show_default=False,
        help="Show progress messages too (-vv: also debugging messages). Goes before the command.",
    ),
    quiet: bool = typer.Option(
        False, "-q", "--quiet", help="Show errors only, no warnings. Goes before the command."
    ),
) -> None:
    """kneescope command line."""
    from typer._click.exceptions import UsageError

    from kneescope.cli.logs import configure_console

    if verbose and quiet:
        raise UsageError("give -v/--verbose or -q/--quiet, not both")
    configure_console(verbose, quiet)


_COMMANDS: tuple[tuple[str, str], ...] = (
    # (command name, module under kneescope.cli); the module defines a function of the
    # command's name (with "-" as "_"). Keep the order: it is the order of `--help`.
    ("demo", "cmd_demo"),
    ("synth", "cmd_synth"),
    ("ingest", "cmd_ingest"),
    ("catalog", "cmd_catalog"),
    ("export", "cmd_export"),
    ("convert", "cmd_convert"),
    ("plan", "cmd_plan"),
    ("train", "cmd_train"),
    ("models", "cmd_models"),
    ("segment", "cmd_segment"),
    ("measure", "cmd_measure"),
    ("xray", "cmd_xray"),
    ("run", "cmd_run"),
    ("status", "cmd_status"),
    ("results", "cmd_results"),
    ("qc", "cmd_qc"),
    ("score", "cmd_score"),
    ("trial", "cmd_trial"),
    ("report", "cmd_report"),
)


def _register() -> None:
    import importlib

    for name, module in _COMMANDS:
        mod = importlib.import_module(f"kneescope.cli.{module}")
        app.command(name)(getattr(mod, name.replace("-", "_")))


_register()


def command() -> Any:
    """The click command of the app, with on/off flags shown without a value in --help
    (typer would print ``--json <bool>``, as if the flag took one)."""
    group = typer.main.get_command(app)
    for cmd in (group, *getattr(group, "commands", {}).values()):
        for param in cmd.params:
            if getattr(param, "is_flag", False) or getattr(param, "count", False):
                param.metavar = ""
        cmd.get_help_option = _flag_help_option(cmd.get_help_option)
    return group


def _flag_help_option(make: Any) -> Any:
    """``--help`` is a flag too (click makes it per call)."""

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return get_help_option


class _CtrlC:
    """Notes whether SIGINT (Ctrl-C) arrived while a command ran.

    Typer turns a KeyboardInterrupt into a silent exit 130; with this handler installed
    :func:`main` knows that 130 came from Ctrl-C and says so. Installed only in the main
    thread and only where SIGINT has Python's default handler (a command that installs its
    own, like ``run``, reports the interruption itself).
    """

    def __init__(self) -> None:
        import signal
        import threading

        self.fired = False
        self._previous: object = None
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.fired = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; Ctrl-C exits 130 with ``interrupted; rerun to resume``."""
    ctrl_c = _CtrlC()
    try:
        code = _main(argv)
    except KeyboardInterrupt:
        ctrl_c.fired, code = True, 130
    finally:
        ctrl_c.restore()
    if code == 130 and ctrl_c.fired:
        sys.stderr.write("interrupted; rerun to resume\n")
    return code


def _main(argv: list[str] | None) -> int:
    """Run the app, mapping kneescope errors to one line and an exit code."""
    import warnings

    # MONAI warns about its own deprecated arguments when its metrics call each other; that
    # is noise for a user of kneescope.
    warnings.filterwarnings("ignore", message=r"monai\..*deprecated", category=FutureWarning)
    from kneescope.cli.logs import reset_console

    try:
        return _run_command(argv)
    finally:
        reset_console()


def _run_command(argv: list[str] | None) -> int:
    # typer >= 0.29 (pyproject) vendors click as typer._click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    from kneescope.errors import KneescopeError

    try:
        result = command().main(args=argv, prog_name="kneescope", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except NoArgsIsHelpError as exc:
        exc.show()  # `kneescope` or `kneescope CMD` alone: the help, exit 2
        return exc.exit_code
    except ClickException as exc:
        # A bad option or value: one line, like every other error.
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "kneescope"
        message = " ".join(exc.format_message().split()).rstrip(".")
        # "Invalid value for '--side': Value error, 'x' is not one of ..." -> "--side 'x' is ..."
        message = re.sub(r"^Invalid value for '([^']+)': (Value error, )?'", r"\1 '", message)
        message = re.sub(r"^Invalid value for '([^']+)': ", r"\1: ", message)
        sys.stderr.write(f"error: {message}; see `{where} --help`\n")
        return exc.exit_code
    except KneescopeError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        raise  # main() reports it
    except OSError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
