"""Windows: no module of the package, and so no command, may need a POSIX-only module to import.

The CLI imports every command's module to build its parser, so one top-level ``import resource``
(as bench.py had) stops every command on Windows before it starts. A child process with those
modules made unimportable runs ``--help`` of every command.
"""

import ctypes
import json
import subprocess
import sys

from vdeblur.bench import _process_memory_counters
from vdeblur.cli import COMMAND_MODULES

# In CPython on Linux, absent from CPython on Windows (os needs posix itself, so that one stays).
POSIX_ONLY = ("resource", "fcntl", "termios", "tty", "pty", "pwd", "grp", "syslog", "readline")

CHILD = """
import importlib, json, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None    # `import name` now raises ImportError, as on Windows
import vdeblur
from vdeblur.cli import build_parser
failed = {{}}
for module in pkgutil.walk_packages(vdeblur.__path__, "vdeblur."):
    if module.name == "vdeblur.__main__":   # runs the CLI when imported
        continue
    try:
        importlib.import_module(module.name)
    except ImportError as e:
        if "halted" in str(e):  # blocked by us; an optional GPU extra that is not installed is fine
            failed[module.name] = str(e)
parser = build_parser()
commands = sorted(parser._subparsers._group_actions[0].choices)
helps = {{}}
for command in commands:
    try:
        parser.parse_args([command, "--help"])
    except SystemExit as e:
        helps[command] = e.code
print(json.dumps({{"failed": failed, "helps": helps}}))
"""


def test_every_module_and_command_works_without_posix_only_modules():
    proc = subprocess.run([sys.executable, "-c", CHILD.format(blocked=POSIX_ONLY)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["failed"] == {}
    assert len(result["helps"]) == len(COMMAND_MODULES)   # one command each
    assert set(result["helps"].values()) == {0}


def test_windows_memory_counters_have_psapis_layout():
    """PROCESS_MEMORY_COUNTERS: cb and PageFaultCount (DWORD), then eight SIZE_T: 72 bytes on 64-bit."""
    counters = _process_memory_counters()
    assert ctypes.sizeof(counters) == 2 * 4 + 8 * ctypes.sizeof(ctypes.c_size_t)
    assert counters.PeakWorkingSetSize.offset == 8
