"""`csbsr report`: a static page from a real segment run, with severity classes and sortable tables."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from test_segment import _DarkIsCrack, _tiny_job, cli

from csbsr_cli.data.image_io import write_png
from csbsr_cli.infer.gsd import GsdOptions
from csbsr_cli.infer.inputs import discover
from csbsr_cli.infer.outputs import OutputOptions
from csbsr_cli.infer.pipeline import segment
from csbsr_cli.infer.runner import TorchRunner
from csbsr_cli.report.html import width_histogram
from csbsr_cli.report.severity import UNKNOWN, severity


def test_severity_classes_follow_the_thresholds():
    assert [severity(w) for w in (0.1, 0.3, 1.0, 1.25, 4.0)] == [
        "insignificant", "moderate", "moderate", "wide", "wide",
    ]  # fmt: skip
    assert severity(None) == UNKNOWN
    assert severity(0.5, (0.2, 0.4), ("a", "b", "c")) == "c"
    with pytest.raises(ValueError):
        severity(0.5, (0.4, 0.2))


def test_width_histogram_counts_every_crack():
    labels, counts = width_histogram([0.1, 0.2, 2.4], bins=4)
    assert counts == [2.0, 0.0, 0.0, 1.0] and labels[0] == "0-0.6"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def run_dir(tmp_path):
    """A segment run of two frames with a dark line each, 1 and 8 input px wide, GSD 0.25 mm."""
    for name, width in (("thin", 1), ("wide", 8)):
        img = np.full((40, 60, 3), 0.7, np.float32)
        img[18 : 18 + width, 5:55] = 0.05
        write_png(tmp_path / "in" / f"{name}.png", img)
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    options = OutputOptions(0.5, gsd=GsdOptions(mm_per_px=0.25))
    segment(discover([str(tmp_path / "in")]), tmp_path / "run", runner, _tiny_job(options))
    return tmp_path / "run"


def test_report_links_thumbnails_and_classes_cracks(run_dir, capsys):
    code, text = cli(capsys, "report", str(run_dir))
    assert code == 0, text
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(page)
    links = [a["href"] for t, a in parser.tags if t == "a"]
    images = [a["src"] for t, a in parser.tags if t == "img"]
    assert sorted(links) == ["overlay/thin.jpg", "overlay/wide.jpg"]
    assert all((run_dir / src).is_file() for src in images) and len(images) == 2
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from a network
    assert page.count('class="sev-') == 2  # one crack per frame, each with its class
    # max widths 1 px = 0.25 mm (< 0.3: insignificant) and about 7.5 px = 1.9 mm (>= 1.25: wide)
    assert 'data-v="0">insignificant</td>' in page and 'data-v="2">wide</td>' in page
    assert "<svg" in page and "sortable" in page


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, text = cli(capsys, "report", str(tmp_path))
    assert code == 2 and "not a segment run folder" in text


def test_report_shows_the_runs_own_severity_classes(run_dir, capsys):
    """segment classes the cracks (cracks.csv's severity column); the page shows that column, and refuses
    other limits than the run's rather than a second rule."""
    path = run_dir / "cracks.csv"
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0].endswith(",severity")
    path.write_text(text.replace(",insignificant", ",moderate"), encoding="utf-8")  # the thin crack
    code, out = cli(capsys, "report", str(run_dir))
    assert code == 0, out
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'data-v="1">moderate</td>' in page and "insignificant</td>" not in page
    code, out = cli(capsys, "report", str(run_dir), "--severity-mm", "0.1,0.2")
    assert code == 2 and f"{path}: its cracks are classed by segment --severity-mm 0.3,1.25" in out
