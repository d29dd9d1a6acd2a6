"""Sharding for job arrays: a partition of the inputs that every machine computes alike, and the merge."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from synth import make_crack_image
from typer.testing import CliRunner

from csbsr_cli.cli.app import app
from csbsr_cli.errors import InputError
from csbsr_cli.infer.shard import Shard, merge_summaries, resolve_shard, shard_of

runner = CliRunner()

# Hard-coded: the assignment must never change between machines, Python versions or csbsr releases,
# or re-running one shard of an old job would process another shard's frames.
GOLDEN = {
    "MAX_1631_x256_y960": (1, 2),
    "MAX_1641_x0_y2560": (7, 1),
    "flight-12/row-03/IMG_0042": (3, 2),
    "vidéo/000120": (5, 0),
    "a": (2, 1),
}

KEYS = [f"flight-{f:02d}/row-{r:02d}/IMG_{i:04d}" for f in range(4) for r in range(5) for i in range(50)] + [
    "vidéo/000120",
    "дрон/кадр",
    "x/y.png",
]


@pytest.mark.parametrize(("key", "expected"), sorted(GOLDEN.items()))
def test_assignment_is_a_fixed_function_of_the_key(key: str, expected: tuple[int, int]) -> None:
    assert (shard_of(key, 8), shard_of(key, 3)) == expected


def test_assignment_ignores_python_hash_randomisation() -> None:
    code = (
        "import sys; from csbsr_cli.infer.shard import shard_of as f; print([f(k, 7) for k in sys.argv[1:]])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, *KEYS[:50]],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert outputs == {f"{[shard_of(k, 7) for k in KEYS[:50]]}\n"}


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 16])
def test_shards_partition_the_inputs(count: int) -> None:
    parts = [[key for key in KEYS if Shard(k, count).owns(key)] for k in range(count)]
    union = [key for part in parts for key in part]
    assert sorted(union) == sorted(KEYS)  # every input, each exactly once
    assert len(set(union)) == len(union)
    mean = len(KEYS) / count
    assert all(abs(len(p) - mean) < 0.3 * mean for p in parts)  # sha256 spreads the keys evenly


def test_select_keeps_the_input_order() -> None:
    class Source:
        def __init__(self, key: str) -> None:
            self.key = key

    sources = [Source(k) for k in KEYS]
    chosen = Shard(2, 5).select(sources)
    assert [s.key for s in chosen] == [k for k in KEYS if shard_of(k, 5) == 2]


def test_parse_explicit_shard() -> None:
    assert resolve_shard(None) is None
    shard = resolve_shard(" 3/8 ", env={})
    assert (shard.index, shard.count, str(shard), shard.folder) == (3, 8, "3/8", "shard-3-of-8")
    assert resolve_shard("0/1", count=1, env={}).count == 1


@pytest.mark.parametrize(
    ("spec", "count", "message"),
    [
        ("8/8", None, "outside 0..7"),
        ("-1/4", None, "outside 0..3"),
        ("1/0", None, "at least 1"),
        ("a/4", None, "integer"),
        ("3", None, "K/N"),
        ("1/4", 8, "contradicts"),
    ],
)
def test_bad_shard_specs_are_refused(spec: str, count: int | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve_shard(spec, count, env={})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"JOB_COMPLETION_INDEX": "5", "CSBSR_SHARD_COUNT": "8"}, (5, 8, "$JOB_COMPLETION_INDEX")),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "0", "CSBSR_SHARD_COUNT": "2"}, (0, 2, "$AWS_BATCH_JOB_ARRAY_INDEX")),
        # Slurm: counted from the array's minimum; the count defaults to the array's size.
        (
            {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"},
            (3, 4, "$SLURM_ARRAY_TASK_ID"),
        ),
        (
            {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "CSBSR_SHARD_COUNT": "3"},
            (2, 3, "$SLURM_ARRAY_TASK_ID"),
        ),
        # Kubernetes first when several are set (a Slurm-launched pod runner, say).
        ({"SLURM_ARRAY_TASK_ID": "1", "JOB_COMPLETION_INDEX": "0", "CSBSR_SHARD_COUNT": "2"}, (0, 2, None)),
    ],
)
def test_auto_reads_the_job_array(env: dict[str, str], expected: tuple[int, int, str | None]) -> None:
    shard = resolve_shard("auto", env=env)
    assert (shard.index, shard.count) == expected[:2]
    if expected[2]:
        assert shard.origin == expected[2]


def test_auto_count_option_wins_and_errors_are_clear() -> None:
    assert resolve_shard("auto", 4, env={"JOB_COMPLETION_INDEX": "3", "CSBSR_SHARD_COUNT": "9"}).count == 4
    with pytest.raises(InputError, match="none of"):
        resolve_shard("auto", 4, env={})
    with pytest.raises(InputError, match="shard count"):
        resolve_shard("auto", env={"JOB_COMPLETION_INDEX": "1"})
    with pytest.raises(InputError, match=r"JOB_COMPLETION_INDEX.*outside 0\.\.3"):
        resolve_shard("auto", 4, env={"JOB_COMPLETION_INDEX": "4"})


# --- merging -------------------------------------------------------------------------------------------

HEADER = ["frame", "source", "video_frame", "status", "crack_pixels", "error"]


def _shard_run(root: Path, shard: Shard | None, frames: list[str], **run: object) -> Path:
    folder = root / shard.folder if shard else root
    folder.mkdir(parents=True)
    with (folder / "summary.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows([[k, f"/data/{k}.jpg", "", "ok", len(k), ""] for k in sorted(frames)])
    info = {"status": "finished", "settings": {"model": "csbsr-lite", "threshold": 0.5}}
    info["shard"] = str(shard) if shard else None
    (folder / "run.json").write_text(json.dumps({**info, **run}))
    return folder


def _sharded(root: Path, count: int, keys: list[str]) -> list[Path]:
    return [
        _shard_run(root, Shard(k, count), [x for x in keys if shard_of(x, count) == k]) for k in range(count)
    ]


def test_merge_of_a_sharded_folder_equals_the_unsharded_summary(tmp_path: Path) -> None:
    keys = KEYS[:40]
    full = _shard_run(tmp_path / "full", None, keys)
    _sharded(tmp_path / "run", 3, keys)
    out = tmp_path / "run" / "summary.csv"
    result = runner.invoke(app, ["summary", "merge", str(out), str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (full / "summary.csv").read_bytes()
    # Merging again into the same folder (its summary.csv now exists) needs --overwrite and still works.
    assert runner.invoke(app, ["summary", "merge", str(out), str(tmp_path / "run")]).exit_code != 0
    again = runner.invoke(app, ["summary", "merge", str(out), str(tmp_path / "run"), "--overwrite"])
    assert again.exit_code == 0, again.output
    assert out.read_bytes() == (full / "summary.csv").read_bytes()


def test_merge_refuses_overlaps_gaps_and_mixed_runs(tmp_path: Path) -> None:
    keys = KEYS[:30]
    dirs = _sharded(tmp_path / "run", 3, keys)
    with pytest.raises(InputError, match="shard.*1/3.*not among"):
        merge_summaries([dirs[0], dirs[2]])
    partial = merge_summaries([dirs[0], dirs[2]], partial=True)
    assert partial.warnings and len(partial.rows) == len(keys) - sum(shard_of(k, 3) == 1 for k in keys)
    with pytest.raises(InputError, match="twice"):
        merge_summaries([dirs[0], dirs[0] / "summary.csv"])

    other = _shard_run(tmp_path / "other", Shard(1, 3), [keys[0]])
    with pytest.raises(InputError, match="shards overlap"):
        merge_summaries([dirs[0], other, dirs[2]])

    settings = _shard_run(
        tmp_path / "s", Shard(1, 3), [], settings={"model": "csbsr-pspnet", "threshold": 0.5}
    )
    with pytest.raises(InputError, match="differ in model"):
        merge_summaries([dirs[0], settings, dirs[2]])

    unfinished = _shard_run(tmp_path / "u", Shard(1, 3), [], status="interrupted")
    with pytest.raises(InputError, match="interrupted"):
        merge_summaries([dirs[0], unfinished, dirs[2]])

    (tmp_path / "odd.csv").write_text("frame,other\nx,1\n")
    with pytest.raises(InputError, match="columns differ"):
        merge_summaries([dirs[0] / "summary.csv", tmp_path / "odd.csv"])
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="no 'frame' column"):
        merge_summaries([tmp_path / "bad.csv"])


# --- csbsr segment --shard, end to end ------------------------------------------------------------------

LAYOUT = [
    "a/IMG_01.jpg",
    "a/IMG_02.png",
    "b/c/IMG_03.jpg",
    "b/c/IMG_04.jpg",
    "b/IMG_05.png",
    "IMG_06.jpg",
    "IMG_07.png",
]


def _write_frames(root: Path) -> list[str]:
    for seed, rel in enumerate(LAYOUT):
        rgb, _ = make_crack_image(40, 72, seed)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / rel), rgb[:, :, ::-1].copy())
    return sorted(Path(rel).with_suffix("").as_posix() for rel in LAYOUT)


def _segment(frames: Path, *args: str) -> None:
    result = runner.invoke(
        app, ["segment", str(frames), "-q", "--outputs", "mask,overlay,geojson,coco", *args]
    )
    assert result.exit_code == 0, result.output


def _outputs(run: Path) -> dict[str, object]:
    """Every per-frame output (mask, prob, overlay bytes; json without its timing) by path in the run."""
    found: dict[str, object] = {}
    for path in sorted(run.rglob("*")):
        if path.is_file() and path.name not in {"run.json", "summary.csv", "cracks.csv", "coco.json"}:
            rel = path.relative_to(run).as_posix()
            if path.suffix == ".json":
                found[rel] = {k: v for k, v in json.loads(path.read_text()).items() if k != "seconds"}
            else:
                found[rel] = path.read_bytes()
    return found


def _frames_of(run: Path) -> list[str]:
    return [row["frame"] for row in csv.DictReader((run / "summary.csv").open())]


def test_sharded_segment_merges_into_the_unsharded_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames, count = tmp_path / "frames", 3
    keys = _write_frames(frames)
    _segment(frames, "-o", str(tmp_path / "full"))
    sharded = tmp_path / "sharded"
    # The three ways to name a shard: explicit, auto with --shard-count, and environment variables only.
    _segment(frames, "--shard", f"0/{count}", "-o", str(sharded))
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    _segment(frames, "--shard", "auto", "--shard-count", str(count), "-o", str(sharded))
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    monkeypatch.setenv("CSBSR_SHARD", "auto")
    monkeypatch.setenv("CSBSR_SHARD_COUNT", str(count))
    _segment(frames, "-o", str(sharded))

    parts = [_frames_of(sharded / f"shard-{k}-of-{count}") for k in range(count)]
    assert parts == [[key for key in keys if shard_of(key, count) == k] for k in range(count)]
    assert sorted(key for part in parts for key in part) == keys  # disjoint, and every input
    for k in range(count):
        run = json.loads((sharded / f"shard-{k}-of-{count}" / "run.json").read_text())
        assert run["shard"] == f"{k}/{count}" and run["status"] == "finished"

    result = runner.invoke(app, ["summary", "merge", str(sharded / "summary.csv"), str(sharded)])
    assert result.exit_code == 0, result.output
    for name in ("summary.csv", "cracks.csv", "coco.json"):  # per-run tables, merged from the shards
        assert (sharded / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    union: dict[str, object] = {}
    for k in range(count):
        union |= _outputs(sharded / f"shard-{k}-of-{count}")
    assert union == _outputs(tmp_path / "full")  # the same files, byte for byte but the timings


def test_shards_ignore_each_others_outputs_and_may_be_empty(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    keys = _write_frames(frames)
    empty = next(k for k in range(16) if all(shard_of(key, 16) != k for key in keys))
    _segment(frames, "--shard", f"{empty}/16", "-o", str(tmp_path / "many"))
    assert _frames_of(tmp_path / "many" / f"shard-{empty}-of-16") == []
    inside = frames / "results"  # the run folder inside the input folder: shard 1 must not read shard 0's
    _segment(frames, "--shard", "0/2", "-o", str(inside))
    _segment(frames, "--shard", "1/2", "-o", str(inside))
    assert sorted(_frames_of(inside / "shard-0-of-2") + _frames_of(inside / "shard-1-of-2")) == keys
