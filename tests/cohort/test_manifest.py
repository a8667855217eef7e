"""The manifest's state machine against a reference model (hypothesis), and its basics."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kneescope.cohort.item import Item
from kneescope.cohort.item_task import TaskOutcome
from kneescope.cohort.manifest import Manifest
from kneescope.errors import RunError

PROV = {"kneescope_version": "t", "config_hash": "c", "model_hash": ""}
MAX_ATTEMPTS = 2

# One round: the selection (item index -> key version) and what each queued item does.
rounds = st.lists(
    st.tuples(
        st.dictionaries(st.integers(0, 7), st.integers(0, 2), min_size=1, max_size=8),
        st.lists(st.sampled_from(["ok", "fail", "lost", "crash"]), min_size=8, max_size=8),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=40, deadline=None)
@given(rounds=rounds)
def test_manifest_matches_a_reference_model(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[tuple[dict[int, int], list[str]]]
) -> None:
    path = tmp_path_factory.mktemp("m") / "manifest.sqlite"
    model: dict[str, tuple[str, str, int]] = {}  # item -> (key, state, attempts)
    with Manifest(path) as manifest:
        for selection, actions in rounds:
            items = [(Item(f"i{k}"), f"key{v}") for k, v in sorted(selection.items())]
            for item, key in items:
                old = model.get(item.item_id)
                if old is None or old[0] != key:
                    model[item.item_id] = (key, "pending", 0)
                elif old[1] == "running":
                    model[item.item_id] = (key, "pending", old[2])
            assert manifest.sync(items) == len(items)
            queued = manifest.queued(-1, 100, MAX_ATTEMPTS)
            expected = [
                i.item_id
                for i, _ in items
                if model[i.item_id][1] == "pending"
                or (model[i.item_id][1] == "failed" and model[i.item_id][2] < MAX_ATTEMPTS)
            ]
            assert [q.item.item_id for q in queued] == expected
            for q, action in zip(queued, actions, strict=False):
                item_id = q.item.item_id
                key, _, attempts = model[item_id]
                manifest.mark_running(item_id)
                if action == "crash":  # driver killed while the item ran
                    model[item_id] = (key, "running", attempts)
                elif action == "lost":
                    retry = manifest.record_lost(item_id, "worker died", MAX_ATTEMPTS)
                    assert retry == (attempts + 1 < MAX_ATTEMPTS)
                    model[item_id] = (key, "running" if retry else "failed", attempts + 1)
                else:
                    manifest.record(TaskOutcome(item_id, ok=action == "ok", reason="bad"), PROV)
                    model[item_id] = (key, "done" if action == "ok" else "failed", attempts + 1)
            selected = {i.item_id for i, _ in items}
            counts = manifest.counts()
            for state in ("done", "failed"):
                want = sum(1 for k, v in model.items() if k in selected and v[1] == state)
                assert counts[state] == want
            assert len(list(manifest.rows(("done",)))) == counts["done"]


def test_release_returns_running_items_to_pending(tmp_path: Path) -> None:
    with Manifest(tmp_path / "m.sqlite") as manifest:
        manifest.sync([(Item("a"), "k"), (Item("b"), "k")])
        manifest.mark_running("a")
        manifest.mark_running("b")
        manifest.record(TaskOutcome("b", ok=True, values={"x": 1.5}), PROV)
        manifest.release(["a", "b"])
        assert manifest.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 0}
        (row,) = manifest.rows(("done",))
        assert row["result"]["values"] == {"x": 1.5}
        assert row["result"]["provenance"] == PROV


def test_manifest_uses_wal_and_readers_see_progress(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with Manifest(path) as writer:
        writer.sync([(Item("a"), "k")])
        with Manifest(path, readonly=True) as reader:
            assert reader.counts()["pending"] == 1
            writer.mark_running("a")
            writer.record(TaskOutcome("a", ok=True), PROV)
            assert reader.counts()["done"] == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_or_foreign_manifest_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no manifest"):
        Manifest(tmp_path / "nope.sqlite", readonly=True)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(RunError, match="cannot open manifest"):
        Manifest(bad)
