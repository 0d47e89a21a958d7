"""Numbered image sequences (``shot/f_%04d.png``), read and written the way FFmpeg names them.

Renders, scans and VFX plates come as one file per frame. A name with one printf number in it
(``%d``, ``%04d``) is a sequence: as INPUT its files are read in order from the lowest number, at
``--fps`` (FFmpeg's 25 when not given); as OUTPUT each frame becomes one file. An output sequence
is written into a hidden folder beside it and moved into place when complete, so, as with a video
file, an interrupted run leaves no partial sequence under the final names; its frames are kept in
segments meanwhile (each frame's file is one packet), so the same command goes on after a crash.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

from .errors import VdeblurError
from .fileio import fitting

_NUMBER = re.compile(r"%(0?\d*)d")
#: The frame rate of an input sequence when none is given: FFmpeg's, so both tools time it alike.
DEFAULT_RATE = Fraction(25)


def is_sequence(name: str | os.PathLike) -> bool:
    """A file name (not its folder) with exactly one printf number and no other "%" in it, unless a
    file of that very name exists (then it is that file)."""
    base = os.path.basename(str(name))
    return len(_NUMBER.findall(base)) == 1 and base.count("%") == 1 and "://" not in str(name) \
        and not os.path.isfile(name)


def _split(pattern: Path) -> tuple[str, str, str]:
    """("f_", "04", ".png") for "f_%04d.png"."""
    m = _NUMBER.search(pattern.name)
    return pattern.name[:m.start()], m.group(1), pattern.name[m.end():]


def file_name(pattern: Path, number: int) -> Path:
    return pattern.parent / (pattern.name % number)


def numbers(pattern: str | os.PathLike) -> list[int]:
    """The frame numbers whose files exist, sorted: those whose name the pattern prints exactly
    ("%04d" matches f_0007.png and f_12345.png, not f_7.png)."""
    pattern = Path(pattern)
    folder = pattern.parent
    if not folder.is_dir():
        return []
    found = []
    for entry in os.scandir(folder):
        number = _number_of(pattern, entry.name)
        if number is not None and entry.is_file():
            found.append(number)
    return sorted(found)


def _number_of(pattern: Path, name: str) -> int | None:
    """The number ``pattern`` prints as ``name``, or None where it prints no such name."""
    prefix, _, suffix = _split(pattern)
    digits = name[len(prefix):len(name) - len(suffix)] if name.startswith(prefix) and name.endswith(suffix) else ""
    if digits.isdigit() and digits.isascii() and pattern.name % int(digits) == name:
        return int(digits)
    return None


def files(pattern: str | os.PathLike) -> list[Path]:
    """The existing files of a sequence, in order."""
    return [file_name(Path(pattern), n) for n in numbers(pattern)]


def first_named(pattern: str | os.PathLike, paths) -> Path | None:
    """The first of ``paths`` (by name or by what a link names) that is a file ``pattern`` writes or
    replaces: another pattern ("%d" and "%02d" both print f_10.png) or a single file can be one."""
    pattern = Path(pattern)
    folders: dict[Path, Path | None] = {}   # each folder resolved once: a sequence's files share one

    def resolved(folder: Path) -> Path | None:
        if folder not in folders:
            try:
                folders[folder] = folder.resolve()
            except (OSError, RuntimeError):
                folders[folder] = None
        return folders[folder]

    target = resolved(pattern.parent)
    for path in map(Path, paths):
        if _number_of(pattern, path.name) is not None and resolved(path.parent) == target:
            return path
        if path.is_symlink():   # a link's own name can differ from the file it names
            real = path.resolve()
            if _number_of(pattern, real.name) is not None and resolved(real.parent) == target:
                return path
    return None


_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


def guess_pattern(folder: Path) -> tuple[Path, int] | None:
    """The pattern of the largest run of numbered files in ``folder`` and how many it has
    (shot_0001.png ... -> shot_%04d.png), for a message; None if there is none."""
    groups: dict[tuple[str, str, str], int] = {}
    for entry in os.scandir(folder):
        m = _NUMBERED.match(entry.name)
        if m and not entry.name.startswith(".") and entry.is_file():
            prefix, digits, suffix = m.groups()
            # 0007 only fits %04d; 1001 fits %04d and %d alike, and 7, 10, 100 are one %d series.
            for width in {f"%0{len(digits)}d"} | (set() if digits.startswith("0") else {"%d"}):
                groups[(prefix, width, suffix)] = groups.get((prefix, width, suffix), 0) + 1
    if not groups:
        return None
    # The largest run; on a tie (1001-1100 fits both) the padded name, which is what was meant.
    (prefix, width, suffix), count = max(groups.items(), key=lambda item: (item[1], item[0][1] != "%d"))
    return folder / f"{prefix}{width}{suffix}", count


def parse_rate(text: str | None) -> Fraction | None:
    """--fps: "25", "23.976" or "24000/1001"."""
    if text is None:
        return None
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise VdeblurError(f"--fps {text}: give frames per second, such as 25, 23.976 or 24000/1001") from None
    if rate <= 0:
        raise VdeblurError(f"--fps must be > 0, got {text}")
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    if "/" not in text and rate.denominator > 1 and abs(rate - ntsc) < Fraction(1, 1000):
        return ntsc   # 23.976, 29.97, 59.94 are how people write 24000/1001, 30000/1001, 60000/1001
    return rate


def _check_padding(pattern: str | os.PathLike) -> None:
    """%4d pads with spaces in printf and with zeros in FFmpeg: no file matched one reading or the
    other (an output of 6 frames was written, then found missing and dropped). Say which to write."""
    width = _split(Path(pattern))[1]
    if width and not width.startswith("0"):
        raise VdeblurError(f"{pattern}: %{width}d is ambiguous (printf pads it with spaces, FFmpeg with zeros); "
                           f"write %0{width}d for f_0007 or %d for f_7")


def check_input(pattern: str | os.PathLike) -> list[int]:
    """The numbers of an input sequence, which must have files and no gap (FFmpeg would stop at one)."""
    _check_padding(pattern)
    found = numbers(pattern)
    if not found:
        raise VdeblurError(f"{pattern}: no files of this sequence (the pattern's number, e.g. %04d, is the frame number)")
    missing = next((n + 1 for n, m in zip(found, found[1:]) if m != n + 1), None)
    if missing is not None:
        after = next(m for m in found if m > missing)
        raise VdeblurError(f"{pattern}: frame {file_name(Path(pattern), missing).name} is missing ({found[0]} to "
                           f"{missing - 1} exist, then {after} on); a sequence is read without gaps")
    return found


def open_options(pattern: str | os.PathLike, rate: Fraction | None, first: int | None = None) -> dict:
    """av.open() keywords for reading a sequence from its first file (FFmpeg looks only at 0-4 itself)."""
    first = check_input(pattern)[0] if first is None else first
    return {"format": "image2", "options": {"start_number": str(first), "framerate": str(rate or DEFAULT_RATE)}}


def identity(pattern: str | os.PathLike) -> dict:
    """What a resumed run compares: every file's name, size and modification time (reading all the
    pixels of a long sequence would cost minutes)."""
    digest = hashlib.sha256()
    found = numbers(pattern)
    for number in found:
        path = file_name(Path(pattern), number)
        st = path.stat()
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files": len(found), "first": found[0] if found else None, "sha256_listing": digest.hexdigest()}


def check_output(pattern: Path, overwrite: bool) -> None:
    """No file of the sequence may exist unless --overwrite (which replaces the whole sequence)."""
    _check_padding(pattern)
    existing = numbers(pattern)
    if existing and not overwrite:
        shown = file_name(pattern, existing[0]).name
        raise VdeblurError(f"{pattern}: {len(existing)} file(s) of this sequence exist ({shown}, ...); "
                           f"pass --overwrite to replace the sequence")


def temp_pattern(pattern: Path) -> Path:
    """The same pattern in a hidden folder beside it (same filesystem: moving in is a rename)."""
    prefix, _, suffix = _split(pattern)
    return pattern.parent / f".{fitting(prefix + suffix, len(f'..vdeblur-{2**22}.partial'))}.vdeblur-{os.getpid()}.partial" \
        / pattern.name


def publish(tmp: Path, pattern: Path) -> int:
    """Move a finished sequence from ``tmp``'s folder to its names, replacing the files of an older
    sequence under the same pattern (the run had --overwrite to get here), and remove the folder."""
    written = numbers(tmp)
    for old in set(numbers(pattern)) - set(written):
        file_name(pattern, old).unlink()
    for number in written:
        os.replace(file_name(tmp, number), file_name(pattern, number))
    discard(tmp)
    return len(written)


def discard(tmp: Path) -> None:
    shutil.rmtree(tmp.parent, ignore_errors=True)
