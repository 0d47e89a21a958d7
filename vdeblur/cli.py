"""The `vdeblur` command. Each subcommand lives in the module that does the work and registers itself."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import VdeblurError
from .fileio import describe_os_error
from .signals import describe, exit_status, terminate_as_interrupt

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vdeblur", description="Deblur videos with the attentive multi-scale network (Xu et al., CVIU 2021).")
    parser.add_argument("--version", action="version", version=f"vdeblur {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with terminate_as_interrupt():   # SIGTERM/SIGHUP clean up like Ctrl-C (see vdeblur/signals.py)
            return int(args.func(args) or 0)
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


if __name__ == "__main__":
    sys.exit(main())
