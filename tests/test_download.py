import gzip
import hashlib
import struct

import numpy as np
import pytest

from lib import download


def _write_idx(path, array, gz=True):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x.idx.gz", images)
    np.testing.assert_array_equal(download.read_idx(tmp_path / "x.idx.gz"), images)
    _write_idx(tmp_path / "x.idx", images, gz=False)
    np.testing.assert_array_equal(download.read_idx(tmp_path / "x.idx"), images)


def test_read_idx_rejects_garbage_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        download.read_idx(tmp_path / "bad")
    images = np.zeros((4, 2, 2), dtype=np.uint8)
    _write_idx(tmp_path / "t", images, gz=False)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        download.read_idx(tmp_path / "t")


def test_fetch_verifies_checksum_and_is_atomic(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    digest = _write_idx(mirror / "f.gz", np.ones((2, 2), dtype=np.uint8))
    cache = tmp_path / "cache"
    url = mirror.as_uri() + "/"
    got = download.fetch("f.gz", digest, cache, (url,))
    assert got.read_bytes() == (mirror / "f.gz").read_bytes()
    with pytest.raises(download.DownloadError, match="checksum"):
        download.fetch("f.gz", "0" * 64, tmp_path / "cache2", (url,))
    assert not list((tmp_path / "cache2").iterdir())  # nothing half-written stays behind


def test_offline_error_is_clear(tmp_path):
    with pytest.raises(download.DownloadError, match="are you offline"):
        download.fetch("f.gz", "0" * 64, tmp_path, ("http://127.0.0.1:9/",), timeout=2)


def test_load_mnist_without_download_explains(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        download.load_mnist("mnist", "test", root=tmp_path)
    with pytest.raises(ValueError, match="name must be one of"):
        download.load_mnist("cifar")


def test_read_idx_with_a_cut_header(tmp_path):
    path = tmp_path / "cut.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 2))  # three sizes announced, one present
    with pytest.raises(ValueError, match="header is cut short"):
        download.read_idx(path)  # used to raise struct.error
