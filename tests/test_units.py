"""Real units in `segment`: each frame's GSD from a sidecar CSV, EXIF/XMP or --gsd, and severity classes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, TiffImagePlugin
from test_segment import _DarkIsCrack, _tiny_job, cli, models_dir  # noqa: F401 - a fixture

from csbsr_cli.data.camera import read_pose, relative_altitude
from csbsr_cli.data.image_io import write_png
from csbsr_cli.errors import InputError
from csbsr_cli.infer.gsd import GsdOptions, read_sidecar
from csbsr_cli.infer.inputs import discover
from csbsr_cli.infer.outputs import OutputOptions
from csbsr_cli.infer.pipeline import segment
from csbsr_cli.infer.runner import TorchRunner
from csbsr_cli.report.severity import parse_thresholds

# A DJI-style photo 60 px wide: 8.8 mm lens, 13.2 mm sensor, 0.5 m above take-off
# -> 13.2 mm * 500 mm / (8.8 mm * 60 px) = 12.5 mm per pixel.
EXIF_GSD = 12.5
DJI_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/"'
    b' drone-dji:AbsoluteAltitude="+120.5" drone-dji:RelativeAltitude="+0.50"/></rdf:RDF></x:xmpmeta>'
)


def _crack_image(width_px: int = 1) -> np.ndarray:
    img = np.full((40, 60, 3), 0.7, np.float32)
    img[18 : 18 + width_px, 5:55] = 0.05  # one dark line, 50 input px long
    return img


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """side.png (sidecar: 2 mm/px), photo.jpg (EXIF/XMP: 12.5 mm/px), plain.png (no metadata)."""
    root = tmp_path / "in"
    write_png(root / "side.png", _crack_image())
    write_png(root / "plain.png", _crack_image())
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x920A] = TiffImagePlugin.IFDRational(88, 10)
    pixels = (_crack_image() * 255).astype(np.uint8)
    Image.fromarray(pixels).save(root / "photo.jpg", exif=exif, xmp=DJI_XMP, quality=98)
    return root


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_camera_metadata_gives_the_expected_gsd(frames: Path) -> None:
    pose = read_pose(frames / "photo.jpg")
    assert pose is not None
    assert (pose.focal_length_mm, pose.relative_altitude_m, pose.width_px) == (8.8, 0.5, 60)
    assert pose.gsd_mm(13.2) == pytest.approx(EXIF_GSD)
    assert read_pose(frames / "plain.png").gsd_mm(13.2) is None  # no focal length, no height
    autel = b"<rdf:Description><drone:RelativeAltitude>42.25</drone:RelativeAltitude></rdf:Description>"
    assert relative_altitude(autel) == 42.25 and relative_altitude(b"GPSAltitude=30") is None


def test_each_frame_gets_its_own_gsd_and_says_where_from(frames: Path, tmp_path: Path) -> None:
    sidecar = tmp_path / "gsd.csv"
    sidecar.write_text("frame,gsd_mm\nside.png,2.0\nmissing,1\n", encoding="utf-8")
    table, digest = read_sidecar(sidecar)
    gsd = GsdOptions(mm_per_px=0.1, sidecar_sha256=digest, sensor_width_mm=13.2)
    options = OutputOptions(0.5, gsd=gsd, outputs=("geojson", "json"))
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    out = tmp_path / "out"
    result = segment(discover([str(frames)]), out, runner, _tiny_job(options), gsd_sidecar=table)
    assert result.processed == 3 and result.warnings == [
        "1 GSD sidecar row(s) match no frame of this run, e.g. 'missing'"
    ]
    expected = {"side": (2.0, "sidecar"), "photo": (EXIF_GSD, "exif"), "plain": (0.1, "flag")}
    for key, (gsd, source) in expected.items():
        record = json.loads((out / "json" / f"{key}.json").read_text(encoding="utf-8"))
        assert (record["gsd_mm"], record["gsd_source"]) == (gsd, source)
        crack = max(record["cracks"], key=lambda c: c["length_px_input"])
        assert crack["length_mm"] == pytest.approx(crack["length_px_input"] * gsd, abs=1e-3)
        geojson = json.loads((out / "geojson" / f"{key}.geojson").read_text(encoding="utf-8"))
        assert {f["properties"]["length_mm"] for f in geojson["features"]} >= {crack["length_mm"]}
    summary = {r["frame"]: r for r in _read_csv(out / "summary.csv")}
    assert {k: (float(r["gsd_mm"]), r["gsd_source"]) for k, r in summary.items()} == expected
    for row in _read_csv(out / "cracks.csv"):
        gsd = expected[row["frame"]][0]
        assert float(row["max_width_mm"]) == pytest.approx(float(row["max_width_px_input"]) * gsd, abs=1e-3)
        assert float(row["area_mm2"]) == pytest.approx(float(row["area_px_input"]) * gsd**2, rel=1e-3)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["gsd"]["sources"] == {"sidecar": 1, "exif": 1, "flag": 1}
    assert run["gsd"]["frames"]["photo"] == {"gsd_mm": EXIF_GSD, "source": "exif"}


def test_severity_classes_follow_each_frames_gsd_and_the_limits(tmp_path: Path) -> None:
    """The same 1 px line is 0.2 mm wide at 0.2 mm/px and 2 mm wide at 2 mm/px; no GSD: unknown."""
    for name in ("fine", "coarse", "blind"):
        write_png(tmp_path / "in" / f"{name}.png", _crack_image())
    table = {"fine": 0.2, "coarse": 2.0}
    options = OutputOptions(0.5, gsd=GsdOptions(sidecar_sha256="x"), severity_mm=parse_thresholds("0.5,1.5"))
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    segment(discover([str(tmp_path / "in")]), tmp_path / "out", runner, _tiny_job(options), gsd_sidecar=table)
    rows = {r["frame"]: r for r in _read_csv(tmp_path / "out" / "cracks.csv")}
    assert {k: r["severity"] for k, r in rows.items()} == {
        "fine": "insignificant", "coarse": "wide", "blind": "unknown (no GSD)",
    }  # fmt: skip
    assert rows["blind"]["max_width_mm"] == ""
    record = json.loads((tmp_path / "out" / "json" / "coarse.json").read_text(encoding="utf-8"))
    assert record["cracks"][0]["severity"] == "wide"
    summary = {r["frame"]: r for r in _read_csv(tmp_path / "out" / "summary.csv")}
    assert summary["blind"]["gsd_source"] == "none" and summary["blind"]["length_mm"] == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("frame,gsd\na,1\n", "missing gsd_mm"),
        ("frame,gsd_mm\na,-1\n", "line 2: expected a frame and a positive gsd_mm"),
        ("frame,gsd_mm\na,1\na,2\n", "line 3: frame 'a' is listed twice"),
        ("frame,gsd_mm\n", "no rows"),
    ],
)
def test_bad_sidecar_names_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "gsd.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_sidecar(path)
    assert str(info.value).startswith(str(path))


def test_cli_refuses_a_bad_sidecar_and_bad_limits_in_one_line(frames: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "gsd.csv"
    bad.write_text("frame,gsd_mm\nside,abc\n", encoding="utf-8")
    code, text = cli(capsys, "segment", str(frames), "-o", str(tmp_path / "o1"), "--gsd-csv", str(bad), "-q")
    assert code == 2 and f"{bad}: line 2" in text and len(text.strip().splitlines()) == 1
    for command in (["segment", str(frames), "-o", str(tmp_path / "o2"), "-q"], ["report", str(tmp_path)]):
        code, text = cli(capsys, *command, "--severity-mm", "1.25,0.3")
        assert code == 2 and "--severity-mm: expected 2 increasing widths in mm" in text


def test_cli_takes_the_gsd_options(frames: Path, tmp_path: Path, models_dir: Path, capsys) -> None:  # noqa: F811
    sidecar = tmp_path / "gsd.csv"
    sidecar.write_text("frame,gsd_mm\nside,2.0\n", encoding="utf-8")
    out = tmp_path / "run"
    code, text = cli(
        capsys, "segment", str(frames), "-o", str(out), "-m", "tiny", "--models-dir", str(models_dir), "-q",
        "--gsd-csv", str(sidecar), "--sensor-width-mm", "13.2", "--gsd", "0.1", "--severity-mm", "0.5,2",
    )  # fmt: skip
    assert code == 0, text
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert {k: (f["gsd_mm"], f["source"]) for k, f in run["gsd"]["frames"].items()} == {
        "side": (2.0, "sidecar"), "photo": (EXIF_GSD, "exif"), "plain": (0.1, "flag"),
    }  # fmt: skip
    assert run["gsd_sidecar"] == str(sidecar) and run["settings"]["options"]["severity_mm"] == [0.5, 2.0]
    assert list(_read_csv(out / "summary.csv")[0])[-5:] == [
        "gsd_mm", "gsd_source", "length_mm", "max_width_mm", "mean_width_mm",
    ]  # fmt: skip
