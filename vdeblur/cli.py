"""The `vdeblur` command. Each subcommand lives in the module that does the work and registers itself."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys

from . import __version__
from .errors import VdeblurError
from .fileio import describe_os_error
from .signals import describe, exit_status, raise_if_signalled, terminate_as_interrupt

# Modules with a ``register(subparsers)`` function, in the order `--help` lists them.
COMMAND_MODULES = [
    "vdeblur.pipeline",
    "vdeblur.compile",
    "vdeblur.bench",
    "vdeblur.onnx_export",
    "vdeblur.training",
    "vdeblur.evaluate",
    "vdeblur.tf_import",
    "vdeblur.info",
]


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage mistakes said in the one line every other error takes (its own
    print the whole usage first); the exit status stays argparse's 2."""

    #: Set from the command line before parsing: the command named (its --help is the one to read,
    #: also for an unknown option, which the top-level parser reports) and whether JSON was asked for.
    command: str | None = None
    json_lines = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # "-8,0,64,64" (--region) is a value, not an option: argparse knows only "-8" and "-0.5" as
        # negative numbers, and said "expected one argument".
        self._negative_number_matcher = re.compile(r"^-\d[\d.,]*$|^-\.\d+$")

    def error(self, message: str):
        if _Parser.json_lines:   # a script reading stdout gets its line, as for every other refusal
            print(json.dumps({"input": None, "error": message, "output": None}), flush=True)
        prog = f"vdeblur {_Parser.command}" if _Parser.command else self.prog
        self.exit(2, f"vdeblur: error: {message} (see `{prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vdeblur", description="Deblur videos with the attentive multi-scale network (Xu et al., CVIU 2021).")
    parser.add_argument("--version", action="version", version=f"vdeblur {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    parser.command_names = frozenset(subparsers.choices)
    return parser


class _OutlivesItsReader:
    """A text stream that turns quiet when its reader goes away (`vdeblur deblur ... 2>&1 | head`,
    `--json-progress | head -n 1`).

    A closed pipe must not end the job: the video is the product, the messages are not. It must not
    hang it either: tqdm holds its lock while it writes, and a BrokenPipeError raised in the encode
    thread's progress update left that lock held, so the main thread waited on it for ever. Video
    written to standard output (`-o -`) goes through ``.buffer``, untouched: its reader going away
    still ends the job."""

    def __init__(self, stream):
        self._stream, self.reader_gone = stream, False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._go_quiet()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._go_quiet()

    def _go_quiet(self) -> None:
        self.reader_gone = True
        try:   # what is still buffered must not fail again when Python flushes it at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()   # imports torch and PyAV: a second or so, in which Ctrl-C is likely
    except KeyboardInterrupt as e:
        print(f"vdeblur: {describe(e)}", file=sys.stderr)
        return exit_status(e)
    given = sys.argv[1:] if argv is None else argv
    _Parser.command = next((a for a in given if a in parser.command_names), None)
    _Parser.json_lines = _Parser.command == "deblur" and bool({"--json", "--json-progress"} & set(given))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _OutlivesItsReader(stdout), _OutlivesItsReader(stderr)
    try:
        with terminate_as_interrupt():   # SIGTERM/SIGHUP clean up like Ctrl-C (see vdeblur/signals.py)
            try:
                return int(args.func(args) or 0)
            except (VdeblurError, OSError):
                raise_if_signalled()   # the signal's own exception was lost inside FFmpeg: this error is its doing
                raise
    except VdeblurError as e:
        print(f"vdeblur: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"vdeblur: {describe(e)}", file=sys.stderr)
        return exit_status(e)
    except BrokenPipeError:
        return 1
    except OSError as e:   # a full disk or a vanished folder that no command turned into its own message
        print(f"vdeblur: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    finally:
        sys.stdout, sys.stderr = stdout, stderr


if __name__ == "__main__":
    sys.exit(main())
