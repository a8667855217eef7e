"""The Zarr v3 VolumeStore: bit-exact round trips, geometry attributes, corruption, ratio."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from io_test_helpers import noisy_dess_like, oblique_volume

from kneescope.core import Volume
from kneescope.errors import InputError, StoreError
from kneescope.io.zarr_store import StoreLayout, VolumeStore, read_zarr_volume, write_zarr_volume

KEY = "9000001/V00/right/SAG_3D_DESS"

DTYPES = st.sampled_from(
    ["uint8", "int8", "uint16", "int16", "int32", "uint32", "float32", "float64"]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    array=DTYPES.flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=9),
            elements={"allow_nan": False, "allow_infinity": False}
            if dt.startswith("float")
            else None,
        )
    )
)
def test_round_trip_is_bit_exact(array: np.ndarray) -> None:
    volume = Volume(array, np.diag([0.3, 0.4, 0.7, 1.0]), {"series_uid": "1.2.3"})
    with tempfile.TemporaryDirectory() as tmp:
        store = VolumeStore(Path(tmp) / "store.zarr", layout=StoreLayout(chunk_vox=8))
        stats = store.write(KEY, volume, {"source": "test"})
        assert stats.bytes_in == array.nbytes
        assert stats.bytes_out > 0
        back = store.read(KEY)
        assert back.array.dtype == array.dtype
        assert back.array.shape == array.shape
        assert back.array.tobytes() == array.tobytes()  # bit-exact, also for -0.0
        np.testing.assert_array_equal(back.affine_ras, volume.affine_ras)


def test_geometry_and_provenance_attributes(tmp_path: Path) -> None:
    volume = oblique_volume(
        (0.5, 0.5, -0.5, 0.1), (0.36, 0.36, 0.7), (1.0, 2.0, 3.0), mirrored=True
    )
    volume = volume.with_array(volume.array, series_uid="1.2.3", side="left")
    store = VolumeStore(tmp_path / "store")
    store.write(KEY, volume, {"source_path": "/data/OAI/0.C.2/9000001", "sha256_source": "ab"})
    attrs = store.attrs(KEY)
    assert attrs["orientation"] == volume.orientation
    np.testing.assert_allclose(attrs["affine_ras"], volume.affine_ras)
    assert attrs["spacing_mm"] == pytest.approx(list(volume.spacing_mm))
    assert attrs["shape"] == list(volume.shape)
    assert attrs["source_path"] == "/data/OAI/0.C.2/9000001"
    assert attrs["metadata"] == {"series_uid": "1.2.3", "side": "left"}
    assert attrs["codec"] == "blosc-zstd5-shuffle"
    back = store.read(KEY)
    np.testing.assert_array_equal(back.affine_ras, volume.affine_ras)
    assert back.metadata["side"] == "left"
    assert back.metadata["store_key"] == KEY
    # readable by plain zarr, as an ordinary v3 hierarchy
    import zarr

    root = zarr.open_group(str(tmp_path / "store"), mode="r")
    np.testing.assert_array_equal(root[KEY][...], volume.array)


def test_keys_has_overwrite(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "s")
    assert store.keys() == []
    volume = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    store.write("a/b", volume)
    store.write("a/c", volume)
    store.write("z", volume)
    assert store.keys() == ["a/b", "a/c", "z"]
    assert store.has("a/b")
    assert not store.has("a")
    assert not store.has("nope")
    with pytest.raises(StoreError, match="exists"):
        store.write("a/b", volume)
    store.write("a/b", volume.with_array(volume.array * 2), overwrite=True)
    np.testing.assert_array_equal(store.read("a/b").array, volume.array * 2)
    assert store.keys() == ["a/b", "a/c", "z"]
    assert not [p for p in (tmp_path / "s" / "a").iterdir() if p.name.startswith(".")]


def test_bad_keys_and_reserved_attrs(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "s")
    volume = Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    for key in ["", "/a", "a/../b", ".hidden", "a//b", "a b"]:
        with pytest.raises(InputError, match="invalid store key"):
            store.write(key, volume)
    with pytest.raises(InputError, match="reserved"):
        store.write("k", volume, {"affine_ras": 1})
    assert store.keys() == []


def test_missing_key(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "s")
    with pytest.raises(StoreError, match="no volume under key 'x/y'"):
        store.read("x/y")
    with pytest.raises(StoreError, match="no volume under key"):
        store.attrs("x/y")


def _store_with_volume(tmp_path: Path) -> tuple[VolumeStore, Path]:
    store = VolumeStore(tmp_path / "s", layout=StoreLayout(chunk_vox=8))
    array = noisy_dess_like((16, 16, 16))
    store.write(KEY, Volume(array, np.eye(4)))
    return store, tmp_path / "s" / KEY


def test_corrupt_chunk_raises_store_error(tmp_path: Path) -> None:
    store, folder = _store_with_volume(tmp_path)
    chunk = next(p for p in (folder / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"garbage" * 10)
    with pytest.raises(StoreError, match="corrupt"):
        store.read(KEY)


def test_missing_chunk_detected_by_checksum(tmp_path: Path) -> None:
    store, folder = _store_with_volume(tmp_path)
    next(p for p in (folder / "c").rglob("*") if p.is_file()).unlink()
    with pytest.raises(StoreError, match="checksum mismatch"):
        store.read(KEY)
    assert store.read(KEY, verify=False).shape == (16, 16, 16)


def test_corrupt_metadata(tmp_path: Path) -> None:
    store, folder = _store_with_volume(tmp_path)
    (folder / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt"):
        store.read(KEY)


def test_foreign_array_without_attributes(tmp_path: Path) -> None:
    import zarr

    store = VolumeStore(tmp_path / "s")
    store.write("k", Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)))
    zarr.create_array(str(tmp_path / "s" / "foreign"), shape=(2, 2), dtype="u1")
    assert store.keys() == ["foreign", "k"]
    with pytest.raises(StoreError, match="lacks kneescope attributes"):
        store.read("foreign")


def test_failed_write_leaves_no_key(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "s")

    class Unserialisable:
        def __str__(self) -> str:
            raise RuntimeError("cannot")

    with pytest.raises(RuntimeError, match="cannot"):
        store.write("k", Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), {"x": Unserialisable()})
    assert store.keys() == []
    assert not store.has("k")


def test_standalone_array_round_trip(tmp_path: Path) -> None:
    volume = oblique_volume((1, 2, 3, 4), (0.5, 0.5, 1.0), (0.0, 0.0, 0.0))
    write_zarr_volume(volume, tmp_path / "v.zarr", {"note": "x"})
    back = read_zarr_volume(tmp_path / "v.zarr")
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_array_equal(back.affine_ras, volume.affine_ras)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.zarr"]


def test_compression_ratio_on_noisy_dess_like_volume(tmp_path: Path) -> None:
    """>= 1.8x on DESS-like uint16 data with 3 % Rician noise (full size: benchmarks/)."""
    array = noisy_dess_like((64, 128, 128), noise_fraction=0.03)
    store = VolumeStore(tmp_path / "s")
    stats = store.write(KEY, Volume(array, np.diag([0.36, 0.36, 0.7, 1.0])))
    assert stats.ratio >= 1.8, stats
    assert store.read(KEY).array.tobytes() == array.tobytes()
    doc = json.loads((tmp_path / "s" / KEY / "zarr.json").read_text())
    assert doc["zarr_format"] == 3


def test_parallel_writers_share_parent_groups(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = VolumeStore(tmp_path / "s")
    volumes = {
        f"900000{n}/V00/{side}/dess": Volume(np.full((4, 4, 4), n, np.uint16), np.eye(4))
        for n in range(4)
        for side in ("left", "right")
    }
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: store.write(kv[0], kv[1]), volumes.items()))
    assert store.keys() == sorted(volumes)
    for key, volume in volumes.items():
        np.testing.assert_array_equal(store.read(key).array, volume.array)
