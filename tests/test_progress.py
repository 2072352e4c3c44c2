"""Progress where stderr is no terminal (a log file, nohup, CI, Slurm): plain lines, now and then."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest

import geosr.progress
from geosr.progress import ProgressLines, duration
from tests.test_bad_input import run_cli

LINE = re.compile(r"geosr: (?P<label>.+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \((?P<pct>\d+) %\), ")


class Clock:
    """Seconds as the test sets them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(seconds: float, total: int, capsys) -> list[str]:
    """A run of ``total`` tiles done at a steady pace over ``seconds``: the lines it prints."""
    clock = Clock()
    progress = ProgressLines("scene.tif", "tiles", clock=clock)
    clock.now = 5.0  # the model loads, the scene is normalised
    progress(0, total)
    for done in range(1, total + 1):
        clock.now = 5.0 + seconds * done / total
        progress(done, total)
    return capsys.readouterr().err.splitlines()


def test_a_short_run_prints_no_progress_line(capsys) -> None:
    assert simulate(20, 1000, capsys) == []


def test_a_run_of_minutes_prints_a_line_a_tenth_and_ends_at_the_end(capsys) -> None:
    lines = simulate(600, 480, capsys)
    assert 9 <= len(lines) <= 11, lines
    first = lines[0]
    # 48 tiles (10 %) take 60 s, after 5 s of start-up; 432 tiles are left at that pace.
    assert first == "geosr: scene.tif: 48/480 tiles (10 %), 1m05s elapsed, ~9m00s left", first
    assert lines[-1] == "geosr: scene.tif: 480/480 tiles (100 %), 10m05s elapsed"


def test_a_run_of_hours_says_it_is_alive_every_five_minutes(capsys) -> None:
    lines = simulate(10 * 3600, 20000, capsys)
    assert 115 <= len(lines) <= 125, len(lines)
    assert "~9h55m left" in lines[0] and lines[-1].startswith("geosr: scene.tif: 20000/20000 tiles")


def test_a_fast_run_is_never_a_flood(capsys) -> None:
    lines = simulate(200, 5000, capsys)  # 25 tiles a second: a line at most every 30 s
    assert len(lines) <= 200 // 30 + 1, lines


def test_a_resumed_run_estimates_from_the_tiles_it_computes() -> None:
    clock = Clock()
    progress = ProgressLines("scene.tif", "tiles", clock=clock)
    progress(300, 400)  # kept from the interrupted run
    clock.now = 100.0
    assert progress.line(350, 400, clock.now).endswith("1m40s elapsed, ~1m40s left")


def test_durations_read_as_a_log_needs() -> None:
    assert [duration(s) for s in (0.4, 59, 61, 3599, 3600, 7 * 3600 + 5 * 60 + 59)] == [
        "0s",
        "59s",
        "1m01s",
        "59m59s",
        "1h00m",
        "7h05m",
    ]


def test_run_into_a_log_file_prints_progress_lines(make_raster, tmp_path, capfd, monkeypatch) -> None:
    """stderr is captured here, as it is in a log file: rich drew nothing there, not even at the end."""
    monkeypatch.setattr(geosr.progress, "QUIET_S", 0.0)  # this run takes well under the 30 s
    src = make_raster(height=128, width=128)
    args = ["run", str(src), "--model", "bicubic", "--tile", "32", "--batch-size", "1", "-s", "2"]
    code, err = run_cli(args, capfd, monkeypatch)  # capfd: a run writes its lines to the file descriptor
    assert code == 0, err
    lines = [m for m in map(LINE.match, err.splitlines()) if m]
    assert len(lines) >= 5, err
    assert all(m["label"] == "scene.tif" and m["total"] == "16" and m["unit"] == "tiles" for m in lines)
    steps = [int(m["done"]) for m in lines]
    assert steps == sorted(steps) and all(b - a >= 2 for a, b in itertools.pairwise(steps))
    assert lines[-1]["done"] == "16" and lines[-1]["pct"] == "100"
    # The COG build comes after the last tile: the line says so, not just "100 %".
    assert lines[-1].string.startswith("geosr: scene.tif: 16/16 tiles (100 %), building the output, "), err
    assert "building" not in " ".join(line.string for line in lines[:-1]), err
    assert (tmp_path / "scene_x2.tif").exists()


def test_the_bar_shows_a_name_in_brackets_as_it_is(monkeypatch) -> None:
    """The bar's description is rich markup: ``scene [v2].tif`` was drawn as ``scene .tif``."""
    import io

    from rich.console import Console

    import geosr.cli

    screen = io.StringIO()
    monkeypatch.setattr(geosr.cli, "err", Console(file=screen, force_terminal=True, width=120))
    with geosr.cli._progress_bar("scene [v2].tif") as advance:
        advance(1, 2)
        advance(2, 2)
    assert "scene [v2].tif (building the output)" in screen.getvalue(), screen.getvalue()


def test_a_long_name_leaves_the_bar_its_count_and_time(monkeypatch) -> None:
    """A name longer than the terminal took the whole line: the count, 'tiles' and the time left
    were cut to '…'. It is cut in its middle instead, keeping its start and its end."""
    import io

    from rich.console import Console

    import geosr.cli

    def frames(done: int, total: int) -> list[str]:
        screen = io.StringIO()
        monkeypatch.setattr(
            geosr.cli, "err", Console(file=screen, force_terminal=True, width=80, color_system=None)
        )
        with geosr.cli._progress_bar(name) as advance:
            advance(done, total)
        return screen.getvalue().replace("\r", "\n").splitlines()

    name = "S2B_MSIL2A_20230612T103629_N0509_R008_T32UNE_20230612T134211_" * 2 + "B04.tif"
    shown = frames(5, 16)
    assert any("S2B_MSIL2A_202…T134211_B04.tif " in f and " 5/16 tiles " in f for f in shown), shown
    shown = frames(16, 16)
    assert any(
        "S2B_MSIL2A_202…T134211_B04.tif (building the output) " in f and " 16/16 tiles " in f for f in shown
    ), shown


def test_a_non_ascii_name_fits_the_bar_in_an_ascii_locale(monkeypatch) -> None:
    """In a C locale stderr escapes 'è' to '\\xe8' and '…' to '\\u2026': the label, cut by its
    characters, came out up to three columns wider per non-ASCII character (five for the '…'),
    and the bar's line ran past the terminal. It is cut by the columns it is shown in."""
    import io

    from rich.console import Console

    import geosr.cli

    def frames(name: str, done: int, total: int) -> list[str]:
        screen = io.BytesIO()
        # As Python opens stderr in a C locale (UTF-8 mode off): ASCII, escaping what it cannot write.
        stderr = io.TextIOWrapper(screen, encoding="ascii", errors="backslashreplace", write_through=True)
        monkeypatch.setattr(
            geosr.cli, "err", Console(file=stderr, force_terminal=True, width=80, color_system=None)
        )
        with geosr.cli._progress_bar(name) as advance:
            advance(done, total)
        shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue().decode("ascii"))
        return [f for f in shown.replace("\r", "\n").splitlines() if f.strip()]

    for name, label in [
        ("scène_ünï.tif", "sc\\xe8ne_\\xfcn\\xef.tif "),
        ("scène_ünï_" * 8 + "B04.tif", "sc\\xe8ne_\\xfc...n\\xef_B04.tif "),
    ]:
        for done in (5, 16):
            shown = frames(name, done, 16)
            assert any(f.startswith(label) and f" {done}/16 tiles " in f for f in shown), shown
            assert all(len(f) <= 80 for f in shown), shown


@pytest.mark.parametrize("width", [20, 40])
def test_a_narrow_terminal_shows_the_whole_count(monkeypatch, width: int) -> None:
    """Below about 55 columns rich narrowed each column of the bar's line to share the room: at
    40 the count read '2…' ('a_rather_…230101.tif ━━━  2… tiles 0:00…'), at 20 the count was
    gone ('a_rather_…23010… t…'). There, the label cut to fit and the count, whole."""
    import io

    from rich.console import Console

    import geosr.cli

    def frames(done: int, total: int) -> list[str]:
        screen = io.StringIO()
        monkeypatch.setattr(
            geosr.cli, "err", Console(file=screen, force_terminal=True, width=width, color_system=None)
        )
        with geosr.cli._progress_bar("a_rather_long_scene_name_S2A_MSIL2A_20230101.tif") as advance:
            advance(done, total)
        shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
        return [f for f in shown.replace("\r", "\n").splitlines() if f.strip()]

    shown = frames(7, 36)
    assert any(f.startswith("a_r") and f.endswith(".tif 7/36 tiles") for f in shown), shown
    assert all(len(f) <= width for f in shown), shown
    building = frames(36, 36)
    assert any(
        f.endswith(".tif (building the output)" if width == 40 else ".tif (building)") for f in building
    )
    assert all(len(f) <= width for f in building), building


@pytest.mark.parametrize("width", [20, 40, 60])
def test_a_narrow_terminal_shows_the_whole_training_step_count(monkeypatch, width: int) -> None:
    """Under 80 columns rich narrowed every column of the training bar's line: at 60 the step
    count read '12…', at 40 and 20 it was gone ('training     … loss - val PSNR - 0…'). There,
    the count whole, then the loss and the validation PSNR as they fit."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    import geosr.train.cli

    screen = io.StringIO()
    monkeypatch.setattr(
        geosr.train.cli, "err", Console(file=screen, force_terminal=True, width=width, color_system=None)
    )

    def train(config: object, *, progress: Callable[..., None], **_: object) -> str:
        progress(1234, 16000, {"loss": 0.01234, "psnr": 31.25})
        return "trained"

    # A run with validation rasters, whose line has a validation PSNR to fit.
    config = SimpleNamespace(steps=16000, output="run", data=SimpleNamespace(store=None, val=["val.tif"]))
    assert geosr.train.cli._train_with_progress(train, config, None, False, False) == "trained"
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    frames = [f.rstrip() for f in shown.replace("\r", "\n").splitlines() if f.strip()]
    expected = {
        20: "training 1234/16000",
        40: "training 1234/16000, loss 0.0123",
        60: "training 1234/16000, loss 0.0123, val PSNR 31.25 dB",
    }[width]
    assert expected in frames, frames
    assert all(len(f) <= width for f in frames), frames
