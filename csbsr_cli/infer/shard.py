"""Deterministic sharding of a batch for job arrays, and merging the shards' summary.csv files.

Shard K of N (0-based, K in 0..N-1) owns the sources whose key hashes to K: the first 8 bytes of the
sha256 of the key (the frame's output stem, its path relative to the input folder or glob root with POSIX
separators), big-endian, modulo N. The hash depends on nothing but the key, so the shards are disjoint,
cover every input, and are the same on every machine, Python version and run; a video is one source and
goes to one shard whole.

Each shard writes into `<run folder>/shard-K-of-N`, so every task of an array runs the same command;
`csbsr summary merge` then makes one summary.csv of the shards'.

`--shard auto` takes K from the first job-array index variable that is set (Kubernetes Indexed Jobs,
AWS Batch array jobs, Slurm job arrays; Slurm's index counts from its --array minimum) and N from
--shard-count / $CSBSR_SHARD_COUNT, or else from $SLURM_ARRAY_TASK_COUNT.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import InputError
from ..utils.atomic import write_text_atomic

INDEX_VARS = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID")
COUNT_VAR = "CSBSR_SHARD_COUNT"
SUMMARY_NAME = "summary.csv"
RUN_NAME = "run.json"

T = TypeVar("T")


def shard_of(key: str, count: int) -> int:
    """The shard (0-based) that owns `key` among `count` shards."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int
    origin: str = "--shard"  # where the index came from, for messages

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InputError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise InputError(
                f"shard index {self.index} (from {self.origin}) is outside 0..{self.count - 1}: "
                f"shards count from 0, the first of {self.count} is 0/{self.count}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def folder(self) -> str:
        """The shard's run folder inside the run folder all shards share: shard-K-of-N."""
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    def select(self, items: Iterable[T], key: str = "key") -> list[T]:
        """The items (sources with a `key` attribute) this shard owns, in their original order."""
        return [item for item in items if self.owns(getattr(item, key))]


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InputError(f"{what} must be an integer, got {text!r}") from None


def _env_index(env: Mapping[str, str]) -> tuple[int, str]:
    for name in INDEX_VARS:
        if env.get(name, "").strip():
            index = _int(env[name], f"${name}")
            if name == "SLURM_ARRAY_TASK_ID" and env.get("SLURM_ARRAY_TASK_MIN", "").strip():
                index -= _int(env["SLURM_ARRAY_TASK_MIN"], "$SLURM_ARRAY_TASK_MIN")
            return index, f"${name}"
    raise InputError(f"--shard auto: none of {', '.join('$' + n for n in INDEX_VARS)} is set")


def resolve_shard(
    spec: str | None, count: int | None = None, env: Mapping[str, str] | None = None
) -> Shard | None:
    """`--shard K/N` or `--shard auto` (index from the job-array variables) -> a Shard; None -> None.

    `count` is --shard-count; for `auto` it defaults to $CSBSR_SHARD_COUNT, then $SLURM_ARRAY_TASK_COUNT.
    """
    if spec is None or not spec.strip():
        return None
    env = os.environ if env is None else env
    spec = spec.strip()
    if spec.lower() == "auto":
        index, origin = _env_index(env)
        if count is None:
            for name in (COUNT_VAR, "SLURM_ARRAY_TASK_COUNT"):
                if env.get(name, "").strip():
                    count = _int(env[name], f"${name}")
                    break
            else:
                raise InputError(f"--shard auto needs the shard count: --shard-count N or ${COUNT_VAR}")
        return Shard(index, count, origin)
    index_text, sep, count_text = spec.partition("/")
    if not sep:
        raise InputError(f"--shard must be K/N (0-based K, e.g. 0/4) or auto, got {spec!r}")
    shard = Shard(_int(index_text, "--shard K"), _int(count_text, "--shard N"))
    if count is not None and count != shard.count:
        raise InputError(f"--shard {spec} contradicts --shard-count {count}")
    return shard


@dataclass
class MergeResult:
    header: list[str]
    rows: list[dict[str, str]]
    sources: list[Path]
    warnings: list[str] = field(default_factory=list)


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """A sharded run's folder (no run.json of its own) stands for its shard-K-of-N run folders."""
    expanded = []
    for path in inputs:
        shards = sorted(p for p in path.glob("shard-*-of-*") if p.is_dir()) if path.is_dir() else []
        if shards and not (path / RUN_NAME).exists():
            expanded += shards
        elif path.is_dir() and not (path / SUMMARY_NAME).exists():
            raise InputError(f"neither a {SUMMARY_NAME} nor shard-K-of-N folders here", path)
        else:
            expanded.append(path)
    return expanded


def _summary_path(path: Path) -> Path:
    return path / SUMMARY_NAME if path.is_dir() else path


def _read_summary(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read summary ({exc.__class__.__name__}: {exc})", path) from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "frame" not in reader.fieldnames:
        raise InputError("not a csbsr summary.csv (no 'frame' column)", path)
    return list(reader.fieldnames), list(reader)


def _check_runs(folders: Sequence[Path], partial: bool) -> list[str]:
    """Shard runs must be one job: same settings and shard count, every shard present and finished."""
    problems: list[str] = []
    runs = {}
    for folder in folders:
        try:
            runs[folder] = json.loads((folder / RUN_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            problems.append(f"{folder}: no readable {RUN_NAME}")
    settings = [run.get("settings") or {} for run in runs.values()]
    differ = sorted({k for s in settings for k in s if any(t.get(k) != s.get(k) for t in settings)})
    if differ:
        raise InputError(f"these runs differ in {', '.join(differ)}: they are not shards of one job")
    for folder, run in runs.items():
        if run.get("status") != "finished":
            problems.append(f"{folder}: run status is {run.get('status')!r}, not 'finished'")
    shards = {folder: run["shard"] for folder, run in runs.items() if run.get("shard")}
    if shards:
        counts = {int(s.split("/")[1]) for s in shards.values()}
        if len(counts) > 1:
            raise InputError(f"these runs come from different shard counts: {sorted(counts)}")
        count = counts.pop()
        seen = sorted(int(s.split("/")[0]) for s in shards.values())
        if len(set(seen)) != len(seen):
            raise InputError(f"a shard appears twice among the inputs (shards {seen})")
        missing = sorted(set(range(count)) - set(seen))
        if missing:
            problems.append(f"shard(s) {', '.join(f'{k}/{count}' for k in missing)} not among the inputs")
    if problems and not partial:
        raise InputError("; ".join(problems) + " (--partial merges what is there)")
    return problems


def merge_summaries(inputs: Sequence[Path], partial: bool = False) -> MergeResult:
    """Rows of several summary.csv files (or run folders holding one, or a sharded run's folder holding
    shard-K-of-N folders), checked and sorted by frame.

    Refuses different headers and a frame present twice. For run folders, their run.json files must
    describe one finished job (same settings; with --shard, every shard of one count, once each);
    `partial` turns missing or unfinished shards into warnings.
    """
    if not inputs:
        raise InputError("nothing to merge: give shard run folders or summary.csv files")
    inputs = expand_inputs(inputs)
    sources = [_summary_path(p) for p in inputs]
    if len(set(map(Path.resolve, sources))) != len(sources):
        raise InputError("the same summary is given twice")
    folders = [p for p in inputs if p.is_dir()]
    warnings = _check_runs(folders, partial) if folders else []
    tables = [_read_summary(path) for path in sources]
    header = tables[0][0]
    seen: dict[str, Path] = {}
    rows: list[dict[str, str]] = []
    for path, (fields, these) in zip(sources, tables, strict=True):
        if fields != header:
            raise InputError(f"columns differ from {sources[0]}'s ({', '.join(fields)})", path)
        for row in these:
            frame = row["frame"]
            if frame in seen:
                raise InputError(f"frame {frame!r} is also in {seen[frame]}: shards overlap", path)
            seen[frame] = path
            rows.append(row)
    rows.sort(key=lambda r: r["frame"])  # the order csbsr segment writes
    return MergeResult(header, rows, sources, warnings)


def merge_annotations(folders: Sequence[Path], dest_dir: Path) -> list[Path]:
    """cracks.csv and (when the runs wrote it) coco.json of the whole job, rebuilt from the shard runs' frame
    records (json/), as the unsharded run writes them; mm columns when the runs look for GSDs (they share
    their settings)."""
    from .gsd import GsdOptions
    from .outputs import read_record, write_coco, write_cracks  # lazy: outputs pulls in OpenCV

    records, mm, coco = [], False, False
    for folder in expand_inputs(list(folders)):
        if not folder.is_dir():
            continue
        try:
            options = json.loads((folder / RUN_NAME).read_text(encoding="utf-8"))["settings"]["options"]
            mm = mm or GsdOptions(**options["gsd"]).configured
            coco = coco or "coco" in options["outputs"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        records += [r for path in sorted((folder / "json").rglob("*.json")) if (r := read_record(path))]
    written = [dest_dir / "cracks.csv"]
    write_cracks(written[0], records, mm)
    if coco:
        written.append(dest_dir / "coco.json")
        write_coco(written[1], records)
    return written


def write_merged(result: MergeResult, dest: Path) -> None:
    """Write the merged rows as one summary.csv, atomically (a reader never sees half a file)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=result.header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    write_text_atomic(dest, buf.getvalue())
