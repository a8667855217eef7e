"""The analysis-ready store: one Zarr v3 array per volume, with geometry and provenance.

Layout: ``root/`` is a Zarr v3 group; a volume with key ``"9000001/V00/right/dess"`` is the
array ``root/9000001/V00/right/dess/`` (parent folders are groups). Each array is chunked
(64^3 voxels by default, so 3D patches read few chunks) and compressed losslessly with Blosc
zstd level 5 with byte shuffle: >= 1.85x on DESS-like uint16 volumes with 2-4 % Rician
noise (see ``benchmarks/zarr_compression.py``). Its Zarr attributes hold, flat and readable
by any Zarr tool: ``affine_ras`` (4x4, voxel -> RAS+ mm), ``spacing_mm``, ``orientation``,
``shape``, ``dtype``, ``sha256`` (of the C-order array bytes, checked on read), ``metadata``
(the Volume's metadata), ``kneescope_store_format``, plus the caller's own attributes.

Writes are atomic: the array is written into a hidden temporary folder next to its final
place and renamed, so a reader sees a complete volume or none. zarr is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from kneescope.config import FROZEN
from kneescope.core.volume import Volume
from kneescope.errors import GeometryError, InputError, StoreError
from kneescope.io.atomic import atomic_write_dir, atomic_write_path

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
"""Version of the attribute layout written by :class:`VolumeStore`."""

RESERVED_ATTRS = frozenset(
    {
        "affine_ras",
        "spacing_mm",
        "orientation",
        "shape",
        "dtype",
        "sha256",
        "metadata",
        "kneescope_store_format",
        "codec",
    }
)
"""Attribute names the store writes itself; callers' ``attrs`` may not use them."""

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class StoreLayout(BaseModel):
    """Chunking and codec of new arrays (existing arrays keep theirs).

    Attributes:
        chunk_vox: chunk edge in voxels (3D chunks are cubes, clipped to the shape).
        cname: Blosc compressor.
        clevel: compression level (1-9).
        shuffle: Blosc shuffle filter; byte shuffle beats bitshuffle on noisy 12-bit MRI.
    """

    model_config = FROZEN

    chunk_vox: int = Field(default=64, ge=8, le=4096)
    cname: Literal["zstd", "lz4", "lz4hc", "zlib", "blosclz"] = "zstd"
    clevel: int = Field(default=5, ge=1, le=9)
    shuffle: Literal["shuffle", "bitshuffle", "noshuffle"] = "shuffle"

    def codec_name(self) -> str:
        return f"blosc-{self.cname}{self.clevel}-{self.shuffle}"


@dataclass(frozen=True)
class WriteStats:
    """What one :meth:`VolumeStore.write` did.

    Attributes:
        key: the volume's key.
        bytes_in: raw array bytes (``array.nbytes``).
        bytes_out: bytes on disk (chunks + metadata).
        seconds: wall time of the write (encode + disk).
    """

    key: str
    bytes_in: int
    bytes_out: int
    seconds: float

    @property
    def ratio(self) -> float:
        """Compression ratio bytes_in / bytes_out."""
        return self.bytes_in / self.bytes_out if self.bytes_out else float("inf")

    @property
    def mb_per_s(self) -> float:
        """Raw megabytes (1e6 bytes) written per second."""
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else float("inf")


def _zarr() -> Any:
    import zarr

    return zarr


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars/arrays, Paths and tuples converted)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def _sha256(array: npt.NDArray[Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class VolumeStore:
    """A folder of Volumes as Zarr v3 arrays, addressed by ``/``-separated keys.

    Keys are made of letters, digits, ``.``, ``_`` and ``-`` segments joined by ``/`` (no
    segment starts with ``.``), e.g. ``"9000001/V00/right/SAG_3D_DESS"``.
    """

    def __init__(self, root: Path, *, layout: StoreLayout | None = None) -> None:
        self.root = Path(root)
        self.layout = layout or StoreLayout()

    def __repr__(self) -> str:
        return f"VolumeStore({str(self.root)!r})"

    # paths ------------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise InputError(
                f"invalid store key {key!r}: use segments of letters, digits, '.', '_', '-' "
                "joined by '/', not starting with '.'"
            )
        return self.root / key

    def _ensure_groups(self, key: str) -> None:
        """Make the root and every parent folder of ``key`` a Zarr v3 group.

        Each group's ``zarr.json`` is written atomically, so concurrent writers (parallel
        conversion) never see a half-written one.
        """
        parts = key.split("/")[:-1]
        folders = [self.root] + [self.root.joinpath(*parts[: n + 1]) for n in range(len(parts))]
        for folder in folders:
            meta = folder / "zarr.json"
            if meta.is_file():
                if self._node_type(folder) != "group":
                    raise StoreError(f"{folder}: expected a Zarr group, found an array there")
                continue
            attrs = {"kneescope_store_format": STORE_FORMAT} if folder == self.root else {}
            doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with atomic_write_path(meta) as tmp:
                    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
            except OSError as exc:
                raise StoreError(f"{folder}: cannot create Zarr group ({exc.strerror})") from None

    @staticmethod
    def _node_type(folder: Path) -> str | None:
        try:
            doc = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc.get("node_type") if isinstance(doc, dict) else None

    # queries ----------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        """True if a complete volume is stored under ``key``."""
        return self._node_type(self._path(key)) == "array"

    def keys(self) -> list[str]:
        """All stored volume keys, sorted."""
        if not self.root.is_dir():
            return []
        found = []
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            # never descend into temporaries of writes in progress
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if "zarr.json" not in files or here == self.root:
                continue
            if self._node_type(here) == "array":
                found.append("/".join(here.relative_to(self.root).parts))
                dirs[:] = []  # chunk folders below an array hold no volumes
        return sorted(found)

    def attrs(self, key: str) -> dict[str, Any]:
        """All attributes of a stored volume: geometry, provenance and the caller's own.

        Raises:
            StoreError: no volume under ``key``, or unreadable metadata.
        """
        path = self._path(key)
        if not (path / "zarr.json").is_file():
            raise StoreError(self._missing_message(key))
        return _array_attrs(path, f"store {self.root}: {key!r}")

    def _missing_message(self, key: str) -> str:
        return (
            f"store {self.root}: no volume under key {key!r}; convert it first "
            "(kneescope convert) or check the key (VolumeStore.keys())"
        )

    # write ------------------------------------------------------------------------------------
    def write(
        self,
        key: str,
        volume: Volume,
        attrs: Mapping[str, Any] | None = None,
        *,
        overwrite: bool = False,
    ) -> WriteStats:
        """Store ``volume`` under ``key``, atomically.

        Args:
            key: where to store it.
            volume: any 2D/3D Volume; the dtype is kept exactly.
            attrs: JSON-able provenance (source path, series UID, checksum of the source...);
                names in :data:`RESERVED_ATTRS` are refused.
            overwrite: replace an existing volume (atomically); otherwise refuse.

        Returns:
            bytes in/out and the time taken.

        Raises:
            InputError: bad key or reserved attribute names.
            StoreError: the key exists (without ``overwrite``) or the write fails.
        """
        final = self._path(key)
        user_attrs = dict(attrs or {})
        clash = sorted(RESERVED_ATTRS & set(user_attrs))
        if clash:
            raise InputError(f"attrs may not use the store's reserved names {clash}")
        if not overwrite and final.exists():
            raise StoreError(
                f"store {self.root}: key {key!r} exists; pass overwrite=True to replace it"
            )
        t0 = time.perf_counter()
        self._ensure_groups(key)
        nbytes = _write_array(
            final, volume, user_attrs, self.layout, what=f"store {self.root}: {key!r}"
        )
        seconds = time.perf_counter() - t0
        stats = WriteStats(key, nbytes, _disk_bytes(final), seconds)
        logger.debug(
            "stored %s: %d -> %d bytes (%.2fx) in %.2f s",
            key,
            stats.bytes_in,
            stats.bytes_out,
            stats.ratio,
            seconds,
        )
        return stats

    # read -------------------------------------------------------------------------------------
    def read(self, key: str, *, verify: bool = True) -> Volume:
        """Read the volume under ``key`` bit-exactly, with its geometry.

        Args:
            verify: check the SHA-256 of the data against the one written (catches missing
                or altered chunks, which Zarr would otherwise fill silently).

        Returns:
            Volume with the stored dtype and affine; metadata = the written Volume's metadata
            plus ``store_root`` and ``store_key``.

        Raises:
            StoreError: no volume under ``key``, or its metadata or chunks are corrupt.
        """
        attrs = self.attrs(key)
        volume = _read_array(
            self._path(key), attrs, verify=verify, what=f"store {self.root}: volume {key!r}"
        )
        return volume.with_array(volume.array, store_root=str(self.root), store_key=key)


def _write_array(
    final: Path, volume: Volume, user_attrs: dict[str, Any], layout: StoreLayout, *, what: str
) -> int:
    """Write one Zarr v3 array at ``final`` atomically; return the raw byte count."""
    zarr = _zarr()
    from zarr.codecs import BloscCodec

    array = np.ascontiguousarray(volume.array)
    doc = {
        **_jsonable(user_attrs),
        "kneescope_store_format": STORE_FORMAT,
        "affine_ras": volume.affine_ras.tolist(),
        "spacing_mm": list(volume.spacing_mm),
        "orientation": volume.orientation,
        "shape": list(volume.shape),
        "dtype": array.dtype.str,
        "sha256": _sha256(array),
        "metadata": _jsonable(dict(volume.metadata)),
        "codec": layout.codec_name(),
    }
    chunks = tuple(min(layout.chunk_vox, n) for n in array.shape)
    codec = BloscCodec(cname=layout.cname, clevel=layout.clevel, shuffle=layout.shuffle)
    try:
        with atomic_write_dir(final) as tmp:
            zarr_array = zarr.create_array(
                store=str(tmp),
                shape=array.shape,
                dtype=array.dtype,
                chunks=chunks,
                compressors=codec,
                attributes=doc,
                zarr_format=3,
                dimension_names=("i", "j", "k")[: array.ndim],
            )
            zarr_array[...] = array
    except OSError as exc:
        raise StoreError(f"{what}: cannot write ({exc})") from None
    return int(array.nbytes)


def _read_array(path: Path, attrs: Mapping[str, Any], *, verify: bool, what: str) -> Volume:
    """Read the Zarr v3 array at ``path`` (whose attributes are ``attrs``) as a Volume."""
    zarr = _zarr()
    try:
        zarr_array = zarr.open_array(store=str(path), mode="r", zarr_format=3)
        array = np.asarray(zarr_array[...])
    except (ValueError, RuntimeError, OSError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{what} is corrupt ({type(exc).__name__}: {exc}); re-convert it"
        ) from None
    try:
        affine = np.asarray(attrs["affine_ras"], dtype=np.float64)
        expected_sha = str(attrs["sha256"])
        metadata = dict(attrs.get("metadata", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(
            f"{what} lacks kneescope attributes ({exc}); it was not written by kneescope"
        ) from None
    if verify and _sha256(array) != expected_sha:
        raise StoreError(
            f"{what} is corrupt (checksum mismatch: chunks missing or altered); re-convert it"
        )
    try:
        return Volume(array, affine, metadata)
    except (GeometryError, InputError) as exc:
        raise StoreError(f"{what} is corrupt ({exc})") from None


def _array_attrs(path: Path, what: str) -> dict[str, Any]:
    meta = path / "zarr.json"
    if not meta.is_file():
        raise StoreError(f"{what}: no Zarr array there (zarr.json missing)")
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{what}: Zarr metadata is corrupt ({exc})") from None
    if not isinstance(doc, dict) or doc.get("node_type") != "array":
        raise StoreError(f"{what}: not a volume (no Zarr array there)")
    attrs = doc.get("attributes", {})
    return dict(attrs) if isinstance(attrs, dict) else {}


def write_zarr_volume(
    volume: Volume,
    path: Path,
    attrs: Mapping[str, Any] | None = None,
    *,
    layout: StoreLayout | None = None,
) -> Path:
    """Write one Volume as a standalone Zarr v3 array folder at ``path`` (e.g. ``x.zarr``),
    atomically, with the same attributes as :meth:`VolumeStore.write`."""
    path = Path(path)
    user_attrs = dict(attrs or {})
    clash = sorted(RESERVED_ATTRS & set(user_attrs))
    if clash:
        raise InputError(f"attrs may not use the store's reserved names {clash}")
    _write_array(path, volume, user_attrs, layout or StoreLayout(), what=str(path))
    return path


def read_zarr_volume(path: Path, *, verify: bool = True) -> Volume:
    """Read a Zarr v3 array folder written by kneescope (standalone or inside a store)."""
    path = Path(path)
    attrs = _array_attrs(path, str(path))
    volume = _read_array(path, attrs, verify=verify, what=str(path))
    return volume.with_array(volume.array, source_path=str(path))
