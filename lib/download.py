"""MNIST and Fashion-MNIST for "going further" cells: downloaded only on explicit request.

Nothing in the course's default path calls this with ``download=True``. Files are verified by
SHA-256 and written atomically into ``lib.data.cache_dir(<name>)``; offline, a clear error says what to do.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from lib.data import atomic_write, cache_dir, check_split

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
SOURCES = {
    "mnist": {
        "mirrors": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        "sha256": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion-mnist": {
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "sha256": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    },
}


class DownloadError(RuntimeError):
    """The file could not be fetched or did not match its checksum."""


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _ChecksumMismatch(Exception):
    """A downloaded file whose SHA-256 is not the expected one (the next mirror is tried)."""


def fetch(filename: str, expected_sha256: str, folder: Path, mirrors: tuple[str, ...],
          timeout: float = 30.0) -> Path:
    """Return ``folder/filename``, downloading it from the first mirror that works.

    The download goes to a temporary file in ``folder``; only after its SHA-256 matches is it
    renamed into place, so an interrupted or corrupted download never looks like a good file.
    """
    target = folder / filename
    if target.exists():
        if sha256_of(target) == expected_sha256:
            return target
        raise DownloadError(f"{target} exists but its SHA-256 does not match; delete it and try again")
    errors = []
    for mirror in mirrors:
        try:
            with atomic_write(target, suffix=".part") as tmp:
                with open(tmp, "wb") as out, urllib.request.urlopen(mirror + filename, timeout=timeout) as resp:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        out.write(chunk)
                got = sha256_of(tmp)
                if got != expected_sha256:  # leaving the block with an error discards the file
                    raise _ChecksumMismatch(f"{mirror}: checksum {got[:12]}… != expected {expected_sha256[:12]}…")
            return target
        except _ChecksumMismatch as e:
            errors.append(str(e))
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{mirror}: {e}")
    raise DownloadError(f"could not download {filename} (are you offline?). Tried:\n  " + "\n  ".join(errors))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not): the format of MNIST's images and labels."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: the IDX header is cut short (truncated file?)")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {data.size} values (truncated?)")
    return data.reshape(shape)


def load_mnist(name: str = "mnist", split: str = "train", download: bool = False,
               root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST: ``X: (n, 28, 28) float32`` in [0, 1] and ``y: (n,) int64``.

    Reads ``root``, by default ``lib.data.cache_dir(name)``. If the files are missing, ``download=True``
    fetches and verifies them; otherwise ``FileNotFoundError`` explains how.
    """
    if name not in SOURCES:
        raise ValueError(f"name must be one of {sorted(SOURCES)}; got {name!r}")
    check_split(split, ("train", "test"))
    folder = Path(root) if root is not None else cache_dir(name)
    source = SOURCES[name]
    paths = []
    for filename in FILES[split]:
        path = folder / filename
        if not path.exists() and not download:
            raise FileNotFoundError(f"{path} is missing; call load_mnist({name!r}, {split!r}, download=True) "
                                    "once while online (about 50 MB), or copy the files there")
        paths.append(fetch(filename, source["sha256"][filename], folder, source["mirrors"]))
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)
