"""Output folders are written through a staging folder: complete results or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstage import atomic_output
from nstage.atomic_output import staged_output


def test_new_folder_appears_complete(tmp_path: Path) -> None:
    with staged_output(tmp_path / "out") as staging:
        (staging / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_folder_keeps_other_files_and_drops_stale_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "old.dcm").write_text("earlier run")
    (out / "result.json").write_text("{}")
    with staged_output(out, stale=("old.dcm", "result.json")) as staging:
        (staging / "result.json").write_text('{"new": 1}')
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "result.json"]
    assert (out / "result.json").read_text() == '{"new": 1}'


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staged_output(tmp_path / "out") as staging:
        (staging / "half.dcm").write_text("x")
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fail", [False, True])
def test_output_folder_on_its_own_file_system_is_staged_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    """A bind-mounted output folder (another device than its parent): stage inside it, never across devices."""
    out = tmp_path / "mounted"
    out.mkdir()
    monkeypatch.setattr(atomic_output, "_same_device", lambda a, b: False)
    assert atomic_output.staging_parent(out) == out
    seen: list[Path] = []
    try:
        with staged_output(out) as staging:
            seen.append(staging)
            (staging / "result.json").write_text("{}")
            if fail:
                raise RuntimeError("stage failed")
    except RuntimeError:
        pass
    assert seen[0].parent == out
    assert sorted(p.name for p in out.iterdir()) == ([] if fail else ["result.json"])
