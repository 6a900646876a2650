"""The ``coaudio`` command: one Typer app, one module per command.

Start-up stays fast: no command module imports torch at import time (each imports what it
needs when it runs), so ``coaudio --help``, a subcommand's ``--help`` and a mistyped command
answer without loading it.

Errors reach the user as one line on stderr (``error: ...``) and a non-zero status, never as a
traceback: usage errors exit 2, failures 1, Ctrl-C 130, and a reader that closed our stdout
(``coaudio stream ... | head -1``) ends the command quietly with 141, as Unix tools do.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Annotated

import typer

from coaudio_cli import (
    bench,
    classify,
    data,
    evaluate,
    features,
    history,
    models,
    recipes,
    serve,
    stream,
    train,
)
from coaudio_cli.errors import INTERRUPTED, forget_python_interrupt_mark, interruption_reported

log = logging.getLogger("coaudio_cli")

app = typer.Typer(
    name="coaudio",
    help="Online audio classification with Continual Transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bench.app, name="bench")
app.command("features")(features.features_cli)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(train.app, name="train")
app.command("evaluate")(evaluate.evaluate_cli)
app.command("stream")(stream.stream_cli)
app.command("devices")(stream.devices_cli)
app.command("classify")(classify.classify_cli)
app.add_typer(recipes.app, name="recipes")
app.command("serve")(serve.serve_cli)
app.command("history")(history.history_cli)

_VERBOSE = {"on": False}
SIGPIPE_STATUS = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


def _version(value: bool) -> None:
    if value:
        from coaudio import __version__

        typer.echo(f"coaudio {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log diagnostics (and tracebacks) to stderr.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _VERBOSE["on"] = verbose
    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _Plain())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


class _Plain(logging.Formatter):
    """'warning: MESSAGE', as the CLI's own warnings read; -v names the logger (where it came from)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


class StdoutClosed(Exception):
    """The reader of our stdout went away (not an OSError, so no handler mistakes it for a
    failing file or journal)."""


class _GuardedStdout:
    """sys.stdout, except that a write to a closed pipe raises :class:`StdoutClosed`."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise StdoutClosed() from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise StdoutClosed() from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def _say(message: str) -> None:
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.__stdout__.fileno())
    os.close(devnull)


_SIGINT = {"seen": False}


def _note_sigint(signum, frame) -> None:
    """Python's own Ctrl-C handler, remembering that it ran: a Ctrl-C that lands inside an
    import or a library's ``except Exception`` can surface as some other error later, and that
    must still end as an interruption, not as an internal error."""
    _SIGINT["seen"] = True
    signal.default_int_handler(signum, frame)


@contextmanager
def _sigint_noted():
    """Install :func:`_note_sigint` where Python's default handler is (never over SIG_IGN, which a
    shell gives background jobs, nor from a thread, where handlers cannot be set)."""
    _SIGINT["seen"] = False
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _note_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    with _sigint_noted():
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    stdout = sys.stdout
    sys.stdout = _GuardedStdout(stdout)
    try:
        status = app(args=argv, prog_name="coaudio", standalone_mode=False)
        if status == INTERRUPTED and not interruption_reported():  # Ctrl-C that Typer turned into 130
            sys.stderr.write("interrupted\n")
        return status if isinstance(status, int) else 0
    except typer.TyperException as exc:  # usage errors (2) and other parameter errors
        context = getattr(exc, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _say(exc.format_message().replace("Value error, ", "") + hint)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("interrupted\n")
        return INTERRUPTED
    except StdoutClosed:
        _silence_stdout()
        return SIGPIPE_STATUS
    except Exception as exc:  # a defect: still one line, the traceback only with --verbose
        if _SIGINT["seen"]:  # not a defect: the Ctrl-C broke something on its way out
            sys.stderr.write("interrupted\n")
            return INTERRUPTED
        if _VERBOSE["on"]:
            log.exception("internal error")
        _say(
            f"internal error ({exc.__class__.__name__}: {exc}); please report it (run with "
            "--verbose for the traceback)"
        )
        return 1
    finally:
        sys.stdout = stdout


def main() -> None:
    try:
        status = run()
    except KeyboardInterrupt:  # a Ctrl-C that arrived after run() had already handled one
        sys.stderr.write("interrupted\n")
        status = INTERRUPTED
    # The command is over and its status decided. A Ctrl-C from now on could only replace it with a
    # traceback from an exit handler, or with a death by SIGINT: Python gives SIGINT its default
    # action back while it shuts down, which takes a few hundred ms once torch is loaded.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    forget_python_interrupt_mark()  # nor may a KeyboardInterrupt that was handled long ago
    sys.exit(status)
