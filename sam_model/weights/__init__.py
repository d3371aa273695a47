"""Weights files: where they live, how to fetch them and how to check them.

This folder also holds the weights shipped inside the package (``sam_tiny.pt``
and its model card). What is known about each file (URLs, byte size and sha256
as published by others) is in the model table, ``sam_model.model_table``,
which every function here reads unless given another ``registry``. Downloads go to a cache directory (``NAPARI_SAM_CACHE``
or the platform cache, e.g. ``~/.cache/napari-sam``), are written to
``<file>.part`` first, resumed with an HTTP Range request when a ``.part`` is
already there, verified (size, then sha256) and only then renamed into place.
A file that fails verification is removed, ``.part`` included.

:func:`verify` also reads a file with torch (``weights_only=True``) to name
the model its keys and shapes fit.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sam_model import model_table
from sam_model.checkpoint import CheckpointError, architecture_of, read_state_dict
from sam_model.http_fetch import RangeMismatch, TransferInterrupted, WriteError, fetch_resumable
from sam_model.model_table import ModelEntry

CACHE_ENV = "NAPARI_SAM_CACHE"
_CHUNK = 1 << 20  # bytes per read while downloading and hashing


class WeightsError(Exception):
    """A checkpoint is unknown, missing, unreachable or damaged; the message says which and why."""


class DownloadError(WeightsError):
    """The transfer failed (offline, HTTP error, interrupted); a partial ``.part`` may be kept."""


class ChecksumError(WeightsError):
    """The downloaded bytes do not have the published size or sha256; nothing was kept."""


class UnverifiedWeightsWarning(UserWarning):
    """A checkpoint was downloaded without a published sha256 to check it against."""


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """The weights cache: ``$NAPARI_SAM_CACHE`` if set, else the platform cache folder.

    Linux: ``$XDG_CACHE_HOME/napari-sam`` (default ``~/.cache/napari-sam``);
    macOS: ``~/Library/Caches/napari-sam``; Windows: ``%LOCALAPPDATA%\\napari-sam\\Cache``.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "napari-sam" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "napari-sam"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else home / ".cache") / "napari-sam"


def _registry(registry: Mapping[str, ModelEntry] | None) -> Mapping[str, ModelEntry]:
    return model_table.MODELS if registry is None else registry


def get_entry(name: str, registry: Mapping[str, ModelEntry] | None = None) -> ModelEntry:
    """The registry entry called ``name``; :class:`WeightsError` naming the known ones otherwise."""
    reg = _registry(registry)
    try:
        return reg[name]
    except KeyError:
        known = ", ".join(sorted(reg))
        raise WeightsError(f"unknown model {name!r} (known: {known})") from None


def list_weights(registry: Mapping[str, ModelEntry] | None = None) -> list[ModelEntry]:
    """All registry entries, in registry order."""
    return list(_registry(registry).values())


def target_path(name: str, cache_dir: str | os.PathLike | None = None, *,
                registry: Mapping[str, ModelEntry] | None = None) -> Path:
    """Where ``name``'s file is (packaged weights) or belongs (cache), whether or not it exists."""
    entry = get_entry(name, registry)
    if entry.packaged is not None:
        return entry.packaged
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / entry.filename


def cached_path(name: str, cache_dir: str | os.PathLike | None = None, *,
                registry: Mapping[str, ModelEntry] | None = None) -> Path | None:
    """The local file for ``name`` if it is present and has the published size, else ``None``.

    Packaged weights (``sam_tiny``) resolve to the file inside the package.
    Only the size is checked here (cheap); :func:`verify` checks the hash.
    """
    entry = get_entry(name, registry)
    path = target_path(name, cache_dir, registry=registry)
    if not path.is_file():
        return None
    if entry.size is not None and path.stat().st_size != entry.size:
        return None
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """Lower-case hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _human(n: int | None) -> str:
    if n is None:
        return "unknown size"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


# --------------------------------------------------------------------------- download


def _check(part: Path, entry: ModelEntry) -> str | None:
    """``None`` if ``part`` has the published size and sha256, else what is wrong."""
    size = part.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"{size} bytes instead of {entry.size}"
    if entry.sha256 is not None:
        got = sha256_file(part)
        if got != entry.sha256.lower():
            return f"sha256 {got} instead of {entry.sha256}"
    return None


def _manual_hint(entry: ModelEntry, dest: Path) -> str:
    facts = [_human(entry.size) if entry.size is not None else None,
             f"sha256 {entry.sha256}" if entry.sha256 else None]
    facts_text = ", ".join(f for f in facts if f)
    return (f"Without network access, download {entry.urls[0] if entry.urls else entry.filename} "
            f"on another machine and copy it to {dest}"
            + (f" ({facts_text})" if facts_text else "")
            + f", then check it with `napari-sam models verify {entry.name}`")


def download(name: str, cache_dir: str | os.PathLike | None = None, *, progress: bool = True,
             force: bool = False, registry: Mapping[str, ModelEntry] | None = None,
             urls: Sequence[str] | None = None, base_url: str | None = None,
             retries: int = 2, timeout: float = 60.0) -> Path:
    """Fetch ``name``'s checkpoint into the cache and return its path.

    An existing file with the published size is returned as is unless
    ``force``. The transfer writes ``<file>.part``; an existing ``.part`` is
    continued with an HTTP Range request (a server that ignores Range sends
    the whole file, which then replaces it). Interrupted transfers are resumed
    up to ``retries`` times, then :class:`DownloadError` is raised with the
    ``.part`` kept so that calling again resumes. Complete files are checked
    for size and sha256: a mismatch removes the ``.part`` and raises
    :class:`ChecksumError`. Entries without a published sha256 download with
    an :class:`UnverifiedWeightsWarning`. Only a verified file is renamed to
    its final name.

    ``urls`` (a list tried in order) or ``base_url`` (``base_url/filename``)
    replace the registry's URLs, e.g. for an institutional mirror or tests;
    ``registry`` replaces the whole registry. Packaged weights (``sam_tiny``)
    are never downloaded: their path is returned, or :class:`WeightsError`
    raised if the package lacks them.
    """
    entry = get_entry(name, registry)
    dest = target_path(name, cache_dir, registry=registry)
    if entry.packaged is not None:
        if not dest.is_file():
            raise WeightsError(f"{name}: the packaged weights {dest} are missing; reinstall napari-sam")
        return dest
    if urls is not None:
        sources = tuple(urls)
    elif base_url is not None:
        sources = (base_url.rstrip("/") + "/" + entry.filename,)
    else:
        sources = entry.urls
    if not sources:
        raise WeightsError(f"{name}: no download URL is known; {_manual_hint(entry, dest)}")
    if not force and dest.is_file() and (entry.size is None or dest.stat().st_size == entry.size):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights cache {dest.parent}: {exc.strerror or exc}; "
                           f"set {CACHE_ENV} or pass --cache-dir") from exc
    part = dest.with_name(dest.name + ".part")
    if force and part.exists():
        part.unlink()
    if entry.sha256 is None:
        warnings.warn(f"{name}: no published sha256 is known for {entry.filename}; "
                      "it is downloaded without a hash check", UnverifiedWeightsWarning, stacklevel=2)

    failures: list[str] = []
    bad_bytes = False  # some source sent a complete file with the wrong size or hash
    for url in sources:
        attempts = 0
        restarted = False
        while True:
            try:
                fetch_resumable(url, part, size=entry.size, desc=entry.filename,
                                progress=progress, timeout=timeout)
            except RangeMismatch:
                part.unlink(missing_ok=True)
                if restarted:
                    failures.append(f"{url}: the server answers Range requests inconsistently")
                    break
                restarted = True
                continue
            except TransferInterrupted as exc:
                attempts += 1
                if attempts <= retries:
                    continue
                of = f" of {exc.total}" if exc.total is not None else ""
                raise DownloadError(
                    f"download of {name} from {url} was interrupted after {exc.have}{of} bytes "
                    f"({exc.reason}); run the same command again to resume from {part}") from None
            except WriteError as exc:  # local disk, not the network: no point trying mirrors
                raise WeightsError(str(exc)) from exc
            except urllib.error.HTTPError as exc:
                failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
                exc.close()
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
                break
            problem = _check(part, entry)
            if problem is not None:
                part.unlink(missing_ok=True)
                failures.append(f"{url}: the downloaded file has {problem}")
                bad_bytes = True
                break
            os.replace(part, dest)
            return dest
    if bad_bytes:
        raise ChecksumError(f"{name}: {'; '.join(failures)}; the file was deleted, "
                            "nothing was kept in the cache")
    raise DownloadError(f"could not download {name}: {'; '.join(failures)}. {_manual_hint(entry, dest)}")


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found for one file.

    ``expected`` is the entry the file was checked against (when a name was
    given); ``match`` the registry entry whose size and sha256 equal the
    file's (``None``: not a published file); ``architecture`` the layout its
    keys look like; ``problems`` empty when everything checked is right.
    """

    path: Path
    size: int
    sha256: str
    expected: ModelEntry | None
    match: ModelEntry | None
    architecture: str | None
    layout: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The report as short ``key: value`` lines for the command line."""
        out = [f"path: {self.path}", f"size: {self.size} bytes", f"sha256: {self.sha256}"]
        if self.match is not None:
            out.append(f"matches: {self.match.name} ({self.match.filename}, published sha256)")
        elif self.expected is not None and self.expected.sha256 is None:
            out.append(f"matches: {self.expected.name} has no published sha256 to compare with")
        else:
            out.append("matches: no published checkpoint (unknown file)")
        out.append(f"layout: {self.layout}")
        out.extend(f"problem: {p}" for p in self.problems)
        out.append("status: OK" if self.ok else "status: FAILED")
        return out


def verify(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *,
           registry: Mapping[str, ModelEntry] | None = None, load: bool = True) -> VerifyReport:
    """Check a registry name's local file, or any checkpoint file, against the registry.

    A name is looked up in the cache (or the package, for ``sam_tiny``) and its
    size and sha256 compared with the published ones. A path is hashed and
    matched against every entry, so an official file under any name is
    recognised. With ``load`` the file is read with ``weights_only=True`` and
    its key layout reported (and, for a name, compared with the entry's
    architecture). Raises :class:`WeightsError` when there is no such file.
    """
    reg = _registry(registry)
    expected: ModelEntry | None = None
    if isinstance(name_or_path, str) and name_or_path in reg:
        expected = reg[name_or_path]
        path = target_path(name_or_path, cache_dir, registry=reg)
        if not path.is_file():
            hint = ("reinstall napari-sam" if expected.packaged is not None
                    else f"run `napari-sam models download {expected.name}`")
            raise WeightsError(f"{expected.name}: no file at {path}; {hint}")
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise WeightsError(f"{name_or_path}: neither a known model name "
                               f"({', '.join(sorted(reg))}) nor an existing file")
    size = path.stat().st_size
    digest = sha256_file(path)
    match = next((e for e in reg.values()
                  if e.sha256 is not None and e.sha256.lower() == digest
                  and (e.size is None or e.size == size)), None)
    problems: list[str] = []
    if expected is not None:
        if expected.size is not None and size != expected.size:
            problems.append(f"size {size} bytes, published {expected.size}")
        if expected.sha256 is not None and digest != expected.sha256.lower():
            problems.append(f"sha256 differs from the published {expected.sha256}")
    architecture, layout = None, "not read"
    if load:
        architecture, layout, problem = _inspect(path, expected)
        if problem:
            problems.append(problem)
    return VerifyReport(path=path, size=size, sha256=digest, expected=expected, match=match,
                        architecture=architecture, layout=layout, problems=tuple(problems))


_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


def _inspect(path: Path, expected: ModelEntry | None) -> tuple[str | None, str, str | None]:
    """(architecture, layout text, problem or None) of a checkpoint file, read weights-only."""
    try:
        state = read_state_dict(path)
    except CheckpointError as exc:
        return None, "unreadable", str(exc).removeprefix(f"{path}: ")
    n = len(state)
    if not all(any(k.startswith(p) for k in state) for p in _PARTS):
        text = f"not a SAM state dict (no image_encoder/prompt_encoder/mask_decoder keys; {n} tensors)"
        return None, text, text
    arch = architecture_of(state)
    layout = f"{arch} ({n} tensors)" if arch else f"SAM-like, fits no known model ({n} tensors)"
    problem = None
    if expected is not None and expected.architecture in model_table.list_models() and arch != expected.architecture:
        problem = f"keys and shapes are those of {arch or 'no known model'}, not {expected.architecture}"
    return arch, layout, problem
