"""Resumable HTTP(S) downloads into a file with the standard library (and a tqdm bar).

Registry-agnostic: :func:`fetch_resumable` only moves bytes from a URL into
a ``.part`` file, continuing it with a Range request. Verifying and renaming
the result is the caller's job (see ``sam_model.weights.download``).
"""

from __future__ import annotations

import http.client
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

_CHUNK = 1 << 20  # bytes per read


class WriteError(OSError):
    """The local file cannot be written (full disk, permissions); not a network failure."""


class TransferInterrupted(Exception):
    """The body ended before all its bytes arrived; what did arrive stays in the file."""

    def __init__(self, have: int, total: int | None, reason: str):
        super().__init__(reason)
        self.have, self.total, self.reason = have, total, reason


class RangeMismatch(Exception):
    """The server answered a Range request with another range: start over."""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "napari-sam (sam_model)", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def fetch_resumable(url: str, part: Path, *, size: int | None = None, desc: str = "",
                    progress: bool = True, timeout: float = 60.0) -> None:
    """Bring ``part`` up to the full body of ``url``, continuing what it already holds.

    A non-empty ``part`` is continued with ``Range: bytes=<len>-``; a ``206``
    answer is appended, a ``200`` (the server ignored Range) rewrites the file
    from the start, a ``416`` means the file is already complete. ``size`` is
    the expected total in bytes when known: a longer ``part`` is discarded and
    one of exactly ``size`` bytes is left alone. A tqdm bar on stderr shows
    progress unless ``progress`` is false.

    Raises :class:`TransferInterrupted` when the body ends early (the bytes
    received are kept, so calling again resumes), :class:`RangeMismatch`
    when the server answers with a range other than the one asked for,
    ``urllib.error.URLError``/``HTTPError`` and ``OSError`` as urllib does,
    and :class:`WriteError` when ``part`` cannot be written.
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset >= size:
        if offset == size:
            return  # complete already: the caller verifies it
        part.unlink()
        offset = 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # our .part already covers the whole file
            exc.close()
            return
        raise
    with resp:
        mode = "wb"
        if offset and resp.status == 206:
            match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                raise RangeMismatch(f"server sent range {resp.headers.get('Content-Range')!r}")
            mode = "ab"
        else:
            offset = 0  # no Range sent, or the server ignored it: the body is the whole file
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else size
        received = 0

        try:
            fh = open(part, mode)
        except OSError as exc:
            raise WriteError(f"cannot write {part}: {exc.strerror or exc}") from exc
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=desc or part.name, file=sys.stderr, disable=not progress, dynamic_ncols=True)
        with fh, bar:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (http.client.HTTPException, OSError) as exc:
                    raise TransferInterrupted(offset + received, total, repr(exc)) from exc
                if not chunk:
                    break
                try:
                    fh.write(chunk)
                except OSError as exc:
                    raise WriteError(f"cannot write {part}: {exc.strerror or exc}") from exc
                received += len(chunk)
                bar.update(len(chunk))
        if length is not None and received < length:
            raise TransferInterrupted(offset + received, total, "connection closed early")
