"""segment_many: pipelined phases give Segmenter.segment's exact labels, in input order, with
the next volume prepared while the network runs, bounded memory and per-volume errors."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from kneescope.core import Volume, affine_from_axes
from kneescope.errors import InputError
from kneescope.inference.pipeline import Segmented, segment_many
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel
from kneescope.inference.segmenter import SegmentConfig, Segmenter
from kneescope.models import NetworkConfig, build_network


def _model() -> SegmentationModel:
    """A randomly initialised small 3D MONAI UNet (4 classes) on a 1 x 0.8 x 0.8 mm grid."""
    config = NetworkConfig(
        name="unet",
        spatial_dims=3,
        out_channels=4,
        features=(4, 8),
        strides=(2,),
        num_res_units=0,
    )
    torch.manual_seed(3)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={1: "a", 2: "b", 3: "c"},
        spacing_mm=(1.0, 0.8, 0.8),
        orientation="RAS",
        roi_size_vox=(8, 16, 16),
    )
    return SegmentationModel(spec=spec, state_dict=build_network(config).state_dict())


def _volume(seed: int, index: int | None = None) -> Volume:
    """A uint16 blob phantom on an LPS-ish grid (0.9 mm, so the segmenter resamples)."""
    rng = np.random.default_rng(seed)
    shape = (14 + seed % 3, 20, 18)
    img = rng.normal(100.0, 15.0, size=shape)
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    img[np.linalg.norm(grid - np.array(shape) / 2.0, axis=-1) < 5 + seed % 2] += 400.0
    affine = affine_from_axes([3.0, -2.0, 1.0], np.diag([-1.0, -1.0, 1.0]), (0.9, 0.9, 0.9))
    metadata = {} if index is None else {"index": index}
    return Volume(img.clip(0, None).astype(np.uint16), affine, metadata)


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    torch.set_num_threads(1)
    return Segmenter(_model(), SegmentConfig(device="cpu", precision="fp32"))


def test_pipelined_equals_one_by_one_in_order(segmenter: Segmenter) -> None:
    volumes = {i: _volume(i) for i in range(5)}
    expected = {i: segmenter.segment(v, side="right").labels.array for i, v in volumes.items()}
    assert any(np.unique(a).size > 1 for a in expected.values())  # not a blank map

    for overlap in (True, False):
        results = list(
            segment_many(
                segmenter,
                list(volumes),
                lambda i: (volumes[i], "right"),
                overlap=overlap,
                read_ahead=2,
                finish_workers=2,
            )
        )
        assert [r.item for r in results] == list(volumes)
        for r in results:
            assert r.ok and r.segmentation is not None
            seg = r.segmentation
            assert seg.labels.shape == volumes[r.item].shape
            np.testing.assert_array_equal(seg.labels.affine_ras, volumes[r.item].affine_ras)
            np.testing.assert_array_equal(seg.labels.array, expected[r.item])
            assert set(r.seconds) == {"load", "prepare", "infer", "finish"}


def test_a_bad_volume_fails_alone_and_after_runs_for_the_others(segmenter: Segmenter) -> None:
    volumes = {0: _volume(0), 2: _volume(2)}
    flat = Volume(np.zeros((1, 20, 18), dtype=np.uint16), np.eye(4))  # too thin to segment

    def load(i: int) -> tuple[Volume, str | None]:
        if i == 1:
            raise InputError("volume 1 is unreadable; check the file")
        if i == 3:
            return flat, "right"
        return volumes[i], "left"

    written: list[int] = []

    def after(i: int, seg: Any) -> str | None:
        written.append(i)
        side: str | None = seg.side
        return side

    results: list[Segmented[int]] = list(segment_many(segmenter, range(4), load, after=after))
    assert [r.item for r in results] == [0, 1, 2, 3]
    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].error == "load: InputError: volume 1 is unreadable; check the file"
    assert isinstance(results[1].exception, InputError)
    assert results[0].exception is None
    assert results[3].error.startswith("prepare: InputError: ")
    assert "too small to segment" in results[3].error
    assert results[1].segmentation is None and results[3].segmentation is None
    assert sorted(written) == [0, 2]
    assert results[0].after == "left" and results[2].after == "left"


def test_a_bug_is_raised_not_swallowed(segmenter: Segmenter) -> None:
    def load(i: int) -> tuple[Volume, str | None]:
        raise ZeroDivisionError("a bug in the loader")

    with pytest.raises(ZeroDivisionError, match="a bug in the loader"):
        list(segment_many(segmenter, range(3), load))


class _Recorder:
    """A Segmenter's phases with each start and end recorded. The network pass of volume 0
    waits until volume 1 has been prepared: without overlap that never happens (it times
    out and the test fails on the record, not on a clock)."""

    def __init__(self, inner: Segmenter) -> None:
        self.inner = inner
        self.events: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.prepared_1 = threading.Event()
        self.live = 0
        self.most_live = 0

    def _log(self, what: str, index: int, delta: int = 0) -> None:
        with self.lock:
            self.events.append((what, index))
            self.live += delta
            self.most_live = max(self.most_live, self.live)

    def prepare(self, image: Volume, side: str | None = None) -> Any:
        index = int(image.metadata["index"])
        self._log("prepare", index, +1)
        prepared = self.inner.prepare(image, side)
        if index == 1:
            self.prepared_1.set()
        return (index, prepared)

    def infer(self, prepared: Any) -> Any:
        index, state = prepared
        self._log("infer", index)
        if index == 0:
            self.prepared_1.wait(timeout=30)
            self._log("infer-0-saw-1-prepared" if self.prepared_1.is_set() else "no-overlap", 0)
        return (index, self.inner.infer(state))

    def finish(self, raw: Any) -> Any:
        index, state = raw
        result = self.inner.finish(state)
        self._log("finished", index, -1)
        return result


def test_the_next_volume_is_prepared_during_the_network_pass(segmenter: Segmenter) -> None:
    recorder = _Recorder(segmenter)
    volumes = [_volume(i, index=i) for i in range(6)]
    results = list(segment_many(recorder, range(6), lambda i: (volumes[i], "right")))
    assert all(r.ok for r in results)
    assert ("infer-0-saw-1-prepared", 0) in recorder.events
    # read_ahead=1, one finishing: at most 3 volumes between prepare and finished at once
    assert 2 <= recorder.most_live <= 3
    for i, r in enumerate(results):  # the recorder changes nothing
        np.testing.assert_array_equal(
            r.segmentation.labels.array, segmenter.segment(volumes[i], "right").labels.array
        )


def test_bad_arguments_are_refused(segmenter: Segmenter) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(segment_many(segmenter, [], lambda i: (_volume(0), None), read_ahead=0))
