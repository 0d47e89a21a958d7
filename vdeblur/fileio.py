"""Writing files so that a partial file never takes the final name."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import VdeblurError


#: Bytes in a file name on every common filesystem (ext4, XFS, APFS, NTFS in UTF-16 units).
NAME_MAX = 255


def fitting(name: str, extra: int) -> str:
    """``name``, or a shorter stand-in made from it (a prefix and a hash), such that ``extra`` more
    bytes still make a legal file name: a long but legal output name failed on its hidden temp
    file's or resume folder's name ("File name too long"). The same name always gives the same."""
    raw = name.encode()
    if len(raw) + extra <= NAME_MAX:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return raw[:max(0, NAME_MAX - extra - 13)].decode("utf-8", "ignore") + "~" + digest


def cache_root(environ=os.environ) -> Path:
    """``$XDG_CACHE_HOME/vdeblur`` (``~/.cache/vdeblur`` when unset): training runs and compile caches."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vdeblur"


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` (bytes, or a function given the open binary file) to a temp file beside
    ``path``, fsync, then rename over ``path``: a crash leaves the old file or the new one, never a
    partial file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = _new_temp(path)
    except OSError as e:   # named by the file asked for, not the hidden temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename in (None, tmp):   # a full disk while writing names no file, or the hidden one
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _new_temp(path: Path) -> tuple[int, str]:
    """A new hidden file beside ``path``, made with the mode any new file gets (0666 less the umask;
    mkstemp's 0600 would leave the final file unreadable to the user's group)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.parent / f".{fitting(path.name, 18)}.{secrets.token_hex(4)}.partial")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def describe_os_error(e: OSError) -> str:
    """"out.mp4: No space left on device": the file and the reason, without Python's [Errno 28]."""
    reason = e.strerror or str(e)
    return f"{e.filename}: {reason}" if e.filename else reason


#: Still-image files: photos for training, and names that are pictures, not videos or folders.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: INPUT or OUTPUT "-": standard input or output, for pipes to and from ffmpeg, players and other tools.
STDIO = "-"

#: Formats that can be written to a pipe (their muxers never seek back), and the suffix each stands for.
PIPE_FORMATS = {"matroska": ".mkv", "nut": ".nut", "mpegts": ".ts", "webm": ".webm"}
PIPE_DEFAULT = "matroska"   # holds every codec and stream kind vdeblur copies


def is_stream(name: str | os.PathLike) -> bool:
    """Standard input/output or a URL (http://, rtsp://, srt://...): read or written once, in order, with
    nothing to seek, read back or resume."""
    return str(name) == STDIO or "://" in str(name)


def check_output(path: str | os.PathLike, overwrite: bool, dir_hint: str = "",
                 inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """The no-clobber rule every command shares: an existing file is replaced only when asked,
    a directory never (``dir_hint`` says what to give instead), and one of the command's ``inputs``
    not even then (by name, link or second name of the same file)."""
    if str(path) == STDIO:   # deblur streams to "-"; the commands that come here write files
        raise VdeblurError("-o -: this command writes a file, not standard output; give a file name")
    path = Path(path)
    try:
        target = path.resolve()
    except (RuntimeError, OSError):   # Python 3.11 raises RuntimeError for a loop of links
        raise VdeblurError(f"{path}: a loop of symbolic links; give a file name") from None
    for source in map(Path, inputs):
        if target == source.resolve() or (path.exists() and source.exists() and os.path.samefile(path, source)):
            raise VdeblurError(f"{path}: the output would overwrite the input; choose another name")
    if path.is_symlink() and not path.exists() and not overwrite:   # found only when the run had ended
        raise VdeblurError(f"{path}: already exists (a symbolic link to {os.readlink(path)}, which does not); "
                           "pass --overwrite to replace the link")
    if path.is_dir():
        raise VdeblurError(f"{path}: is a directory{'; ' + dir_hint if dir_hint else ''}")
    if path.exists() and not path.is_file():   # replaced by renaming over it: root would swap /dev/null for a file
        raise VdeblurError(f"{path}: not a regular file (a device, pipe or socket); give a file name")
    if path.exists() and not overwrite:
        raise VdeblurError(f"{path}: already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise VdeblurError(f"{path.parent}: {'not a directory' if path.parent.exists() else 'output directory does not exist (a typo makes no folders: create it first)'}")
    return path


def check_not_special(path: str | os.PathLike) -> None:
    """An input that is a named pipe or a device: FFmpeg opens it twice and waits forever."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise VdeblurError(f"{path}: not a regular file (a named pipe or a device); a stream goes in as "
                           f"standard input: vdeblur deblur - -o OUT < {path}")


def check_folder(path: str | os.PathLike) -> Path:
    """A folder given as input: "no such folder", or "not a folder" for a file, as one line."""
    path = Path(path)
    if not path.is_dir():
        raise VdeblurError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}")
    return path


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
