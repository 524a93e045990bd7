"""Where the data files are looked for, and what to say when they are not found.

**Where the files are looked for**, in order; the first directory that holds
all four files is used (each file either ``.gz`` or uncompressed):

1. ``data_dir`` when it is given, and then nowhere else: a typo in an explicit
   path is an error, not a silent fallback to another copy.
2. ``$FNET_DATA/<dataset>`` (``$FNET_DATA/mnist``, ``$FNET_DATA/fashion-mnist``).
   The files are never looked for directly in ``$FNET_DATA``: MNIST and
   Fashion-MNIST use the same file names, so one directory cannot hold both.
3. ``~/.cache/fnet/<dataset>``.
4. System directories, for Fashion-MNIST ``/usr/share/datasets/fashion-mnist``
   (Debian/Ubuntu package ``dataset-fashion-mnist``).

If none has them and ``download=True``, the missing files are downloaded into
``data_dir`` if given, else ``$FNET_DATA/<dataset>`` if set, else
``~/.cache/fnet/<dataset>``; each is checked against the published MD5 and
written atomically. Files found on disk are not checksummed (Debian
recompressed its copies, so their ``.gz`` checksums differ from upstream);
their structure is validated instead: IDX header, sizes, image/label counts,
label range. Every problem raises ``DataError`` naming the file and the fault.
"""

from __future__ import annotations

import os
from pathlib import Path

from fnet.data.datasets import DatasetInfo

__all__ = ["API_SPELLING", "ENV_VAR", "cache_root", "download_dir", "env_dir", "not_found_message", "present",
           "scan", "search", "search_dirs"]

ENV_VAR = "FNET_DATA"


def cache_root() -> Path:
    return Path.home() / ".cache" / "fnet"


def env_dir(info: DatasetInfo) -> Path | None:
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() / info.name if value else None


def search_dirs(info: DatasetInfo, data_dir: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """``(directory, why it is searched)`` in search order."""
    if data_dir is not None:
        return [(Path(data_dir).expanduser(), "the data_dir argument")]
    dirs = []
    env = env_dir(info)
    if env is not None:
        dirs.append((env, f"${ENV_VAR}/{info.name}"))
    dirs.append((cache_root() / info.name, "the fnet cache"))
    for d in info.system_dirs:
        dirs.append((Path(d), f"package {info.apt_package}" if info.apt_package else "system directory"))
    return dirs


def download_dir(info: DatasetInfo, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return env_dir(info) or cache_root() / info.name


def present(directory: Path, file_name: str) -> Path | None:
    """The file as named (``.gz``) or its uncompressed twin, if either exists."""
    for candidate in (file_name, file_name.removesuffix(".gz")):
        p = directory / candidate
        if p.is_file():
            return p
    return None


def scan(info: DatasetInfo, directory: Path) -> tuple[dict[str, Path], list[str]]:
    """``(role -> path of the files present, names of the files missing)``."""
    found, missing = {}, []
    for role, file_name in info.files.items():
        p = present(directory, file_name)
        if p is None:
            missing.append(file_name)
        else:
            found[role] = p
    return found, missing


API_SPELLING = {"no_download": "download=False", "download": "with download=True",
                "data_dir": "data_dir='/path/to/dir'", "data_dir_name": "data_dir"}
"""How the not-found message names the options; the command line passes its own (``--data-dir``)."""


def not_found_message(info: DatasetInfo, data_dir, searched: list[str], dest: Path, download: bool,
                      failures: list[str], spelling: dict[str, str] | None = None) -> str:
    say = {**API_SPELLING, **(spelling or {})}
    names = ", ".join(info.files.values())
    lines = [f"{info.title}: the data files were not found"
             + (", and downloading them failed." if download else f" (and {say['no_download']})."),
             f"Needed: {names} (each .gz or uncompressed), all four in one directory.",
             "Searched, in order:"]
    lines += [f"  - {s}" for s in searched]
    if download:
        lines.append(f"Downloading into {dest}:")
        lines += [f"  - {f}" for f in failures]
    lines.append("To provide the data, do one of:")
    if download:
        lines.append(f"  - connect to the internet and call again (the files go to {dest})")
    else:
        lines.append(f"  - call again {say['download']} (the files go to {dest})")
    urls = ", ".join(info.mirrors)
    lines.append(f"  - download the four files by hand from {urls} into {dest}/")
    if data_dir is None:
        lines.append(f"  - set {ENV_VAR}=/path/to/datasets and put the files in "
                     f"/path/to/datasets/{info.name}/")
        lines.append(f"  - pass {say['data_dir']} holding the files")
    else:
        lines.append(f"  - pass the directory that holds the files as {say['data_dir_name']}, or leave "
                     f"{say['data_dir_name']} out to "
                     f"search ${ENV_VAR}/{info.name}, {cache_root() / info.name}"
                     + ("".join(f", {d}" for d in info.system_dirs)))
    if info.apt_package:
        lines.append(f"  - on Debian or Ubuntu: sudo apt-get install {info.apt_package} (installs into "
                     f"{', '.join(info.system_dirs)})")
    return "\n".join(lines)


def search(info: DatasetInfo, data_dir) -> tuple[dict[str, Path] | None, list[str]]:
    """``(role -> path, [])`` from the first directory holding all four files, else ``(None, searched)``.

    ``searched`` says, for each directory in search order, why it was not used.
    """
    searched = []
    for directory, why in search_dirs(info, data_dir):
        if not directory.is_dir():
            state = "not a directory" if directory.exists() else "does not exist"
            searched.append(f"{directory} ({why}): {state}")
            continue
        found, missing = scan(info, directory)
        if not missing:
            return found, []
        searched.append(f"{directory} ({why}): missing {', '.join(missing)}")
    if data_dir is None and env_dir(info) is None:
        searched.insert(0, f"${ENV_VAR}: not set")
    return None, searched
