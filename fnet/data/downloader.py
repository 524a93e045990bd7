"""Downloading a dataset's files: every file MD5-checked and moved into place atomically."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from fnet.data import datasets, locate
from fnet.data.datasets import DatasetInfo
from fnet.data.idx import DataError

__all__ = ["TIMEOUT", "download", "fetch_missing"]

TIMEOUT = 30.0  # seconds a socket may wait for the server, per operation (not per file)


class _FetchError(Exception):
    """One URL did not give a good file; the message says why."""


def download(name: str, directory: str | os.PathLike | None = None, *,
             mirrors: Sequence[str] | None = None, timeout: float = TIMEOUT) -> Path:
    """Download the files of dataset ``name`` that ``directory`` lacks; return the directory.

    ``directory`` defaults to ``$FNET_DATA/<name>`` if set, else
    ``~/.cache/fnet/<name>``. Each file is tried on each mirror in turn, checked
    against its MD5 and moved into place atomically; a failed or interrupted
    download leaves no file behind. Prints one line per file to stderr.

    **Raises:** ``DataError`` listing every URL tried and why it failed.
    """
    info = datasets.info(name)
    dest = locate.download_dir(info, directory)
    failures = fetch_missing(info, dest, mirrors, timeout)
    if failures:
        raise DataError(f"{info.title}: downloading into {dest} failed:\n"
                        + "\n".join(f"  - {f}" for f in failures))
    return dest


def fetch_missing(info: DatasetInfo, dest: Path, mirrors: Sequence[str] | None, timeout: float) -> list[str]:
    """Download what ``dest`` lacks; ``[]`` on success, else why the first failing file failed."""
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    bases = tuple(mirrors) if mirrors is not None else info.mirrors
    if not bases:
        return ["no mirrors to download from (mirrors=[])"]
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return [f"cannot create the directory {dest}: {e.strerror or e}"]
    failures = _fetch_each(info, dest, bases, timeout)
    if failures and created:
        with contextlib.suppress(OSError):  # leave no empty directory behind (rmdir keeps a non-empty one)
            dest.rmdir()
    return failures


def _fetch_each(info: DatasetInfo, dest: Path, bases: tuple[str, ...], timeout: float) -> list[str]:
    for file_name in info.files.values():
        if locate.present(dest, file_name) is not None:
            continue
        failures = []
        for base in bases:
            url = base.rstrip("/") + "/" + file_name
            print(f"fnet: downloading {url} -> {dest}", file=sys.stderr, flush=True)
            try:
                _fetch(url, dest / file_name, info.md5.get(file_name), timeout)
                break
            except _FetchError as e:
                print(f"fnet: failed: {e}", file=sys.stderr, flush=True)
                failures.append(f"{url}: {e}")
        else:
            return failures
    return []


def _fetch(url: str, target: Path, md5: str | None, timeout: float) -> None:
    """Download ``url`` to ``target`` through a temporary file in the same directory.

    The temporary file is renamed into place only once the transfer is
    complete and the MD5 matches, and is removed on any failure (including
    KeyboardInterrupt), so ``target`` either appears whole or not at all.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        # os.open rather than mkstemp: mode 0o666 minus the umask, like any other
        # file the user downloads (mkstemp's 0o600 would hide a shared $FNET_DATA).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise _FetchError(f"cannot write into {target.parent}: {e.strerror or e}") from None
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
        except urllib.error.HTTPError as e:
            raise _FetchError(f"HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            if not isinstance(e.reason, TimeoutError):  # a connect timeout arrives wrapped
                raise _FetchError(f"{e.reason}") from None
            raise _FetchError(f"no answer within {timeout:g} s (timeout)") from None
        except TimeoutError:
            raise _FetchError(f"no answer within {timeout:g} s (timeout)") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise _FetchError(f"{type(e).__name__}: {e}") from None
        if length is not None and length.isdigit() and received != int(length):
            raise _FetchError(f"the connection closed after {received} of {int(length)} bytes")
        if md5 is not None and digest.hexdigest() != md5:
            raise _FetchError(f"MD5 {digest.hexdigest()} of the {received} bytes received does not match "
                          f"the published {md5}")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
