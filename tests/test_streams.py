"""The geosr command with its standard streams closed, piped or redirected, as a shell, cron or CI
gives them: each case runs the command in a process of its own, with real descriptors, but the
terminal's width, which the command reads from COLUMNS, in this process."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def geosr(*args: str, redirect: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``geosr ARGS REDIRECT`` as ``sh`` runs it (``redirect``: ``2>&-``, ``<&-``, ...), with ``env``
    added to the environment, its stdout and stderr captured where ``redirect`` leaves them."""
    command = ["sh", "-c", f'exec "$@" {redirect}', "sh", sys.executable, "-m", "geosr", *args]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_closed_stderr_leaves_the_run_to_work_and_the_status_to_tell(make_raster, tmp_path: Path) -> None:
    """``geosr run a.tif 2>&-`` (a cron line, a daemon): Python has no stderr, and every command
    died as it set up its own, with exit status 1 and nothing written."""
    src = make_raster(height=16, width=16)
    out = tmp_path / "out.tif"
    done = geosr("run", str(src), "-m", "bicubic", "-s", "2", "-o", str(out), redirect="2>&-")
    assert (done.returncode, done.stdout) == (0, f"{out}\n")
    assert out.exists()
    refused = geosr("info", str(tmp_path / "nope.tif"), redirect="2>&-")
    assert (refused.returncode, refused.stdout) == (2, "")


def test_a_closed_stdout_is_refused_in_one_line_before_any_work(make_raster, tmp_path: Path) -> None:
    """``geosr run a.tif >&-``: every command prints on stdout (a path, a table, JSON), and each
    ended in an AttributeError traceback as it printed, a run after writing its output."""
    src = make_raster(height=16, width=16)
    out = tmp_path / "out.tif"
    for args in (["run", str(src), "-m", "bicubic", "-s", "2", "-o", str(out)], ["models", "--json"]):
        done = geosr(*args, redirect=">&-")
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            "error: cannot write on stdout (it is closed); redirect it instead, to /dev/null to discard "
            "what geosr prints there\n"
        )
    assert not out.exists()


def test_a_closed_stdin_is_said_to_be_closed(tmp_path: Path) -> None:
    """``geosr run /vsistdin/ <&-`` was told that standard input is empty: the first file the
    command opened had taken descriptor 0."""
    done = geosr("run", "/vsistdin/", "-m", "bicubic", "-o", str(tmp_path / "out.tif"), redirect="<&-")
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: /vsistdin/: standard input is closed; pipe a raster into it: "
        "geosr run /vsistdin/ < scene.tif\n"
    )
    assert list(tmp_path.iterdir()) == []


def geosr_in_process(*args: str, columns: str, monkeypatch, capfd) -> str:
    """What ``geosr ARGS`` prints on stdout at ``COLUMNS=columns``, run by :func:`geosr.cli.main` in
    this process: for what a terminal's width changes, not its streams, without a process (and
    torch imported again) a command."""
    from geosr.cli import main

    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit) as ended:
        main()
    printed = capfd.readouterr()
    assert ended.value.code in (0, None), printed.err
    return printed.out


def test_a_terminal_too_narrow_for_a_table_gets_it_as_piped(make_raster, monkeypatch, capfd) -> None:
    """At ``COLUMNS=20`` ``geosr models`` showed its names alone (the other columns 0 wide),
    evaluate's table empty cells, and ``geosr info`` its values a few letters a line ('EPSG:',
    '32633'): each table is now laid out as at 80 columns, a pipe's width, and the terminal
    wraps its lines."""
    src = make_raster(height=32, width=32)
    for args, words in (
        (["models"], "bundled scales"),
        (["info", str(src), "-m", "bicubic", "--no-calibrate"], "CRS EPSG:32633, pixel"),
        (["evaluate", str(src), "-m", "bicubic", "-s", "2", "--border", "2"], "│ mean │"),
    ):
        # The models' cards are wrapped to the terminal's width, under their values.
        narrow, piped = (
            geosr_in_process(*args, columns=width, monkeypatch=monkeypatch, capfd=capfd).split(
                "(model card)"
            )[0]
            for width in ("20", "80")
        )
        # The digits of info's memory and evaluate's scores vary from run to run.
        assert re.sub(r"\d", "0", narrow) == re.sub(r"\d", "0", piped), narrow
        assert words in " ".join(piped.split())


def test_a_pipe_closed_early_ends_quietly_with_the_status_the_readme_gives(make_raster) -> None:
    """``geosr models | head -1``: no 'BrokenPipeError' nor 'Exception ignored' lines, and the
    status the README gives, where it gave none (it promised 0 or 2)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    status = " ".join(readme.split("* **Exit status**:")[1].split("\n* ")[0].split())
    assert "(`geosr models | head -1`) ends the command quietly with status 141 (128 + SIGPIPE" in status
    src = make_raster(height=32, width=32)
    # The commands run at once, each into a pipe whose reader is gone before its first line (every
    # write on stdout fails): one after the other, their imports (torch's) were most of the test's time.
    running: list[tuple[list[str], subprocess.Popen[str]]] = []
    try:
        for args in (
            ["models"],
            ["models", "--json"],
            ["info", str(src), "-m", "bicubic", "--no-calibrate"],
            ["evaluate", str(src), "-m", "bicubic", "-s", "2", "--border", "2", "--json", "-"],
            # Its table is printed by rich, whose own ending of a closed pipe was status 1.
            ["evaluate", str(src), "-m", "bicubic", "-s", "2", "--border", "2"],
        ):
            reader, writer = os.pipe()
            os.close(reader)
            try:
                command = [sys.executable, "-m", "geosr", *args]
                running.append(
                    (args, subprocess.Popen(command, stdout=writer, stderr=subprocess.PIPE, text=True))
                )
            finally:
                os.close(writer)
        for args, process in running:
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 141, (args, stderr)
            # evaluate --json - prints its table on stderr, which stays open.
            assert "Error" not in stderr and "Exception" not in stderr, (args, stderr)
    finally:
        for _, process in running:
            if process.poll() is None:
                process.kill()
                process.communicate()


def _first_line_then_stop(args: list[str], env: dict[str, str]) -> tuple[bytes, int, bytes]:
    """Run ``geosr ARGS`` into a 4 KiB pipe (its least) whose reader stops after the first line,
    as ``head -1`` does; the line, the command's status and its stderr."""
    reader, writer = os.pipe()
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "geosr", *args], stdout=writer, stderr=subprocess.PIPE, env=env
        )
    finally:
        os.close(writer)
    try:
        with os.fdopen(reader, "rb", buffering=0) as pipe:  # unbuffered: the first line alone is read
            first = b""
            while (byte := pipe.read(1)) not in (b"\n", b""):  # b"": the command ended without one
                first += byte
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return first, process.returncode, stderr


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="a pipe's size is set on Linux alone")
def test_a_reader_that_stops_after_one_line_ends_the_command_as_git_ends() -> None:
    """``geosr models | head -1``: the command ended with status 1 (click's), where ``git log |
    head -1`` and gdalinfo end with 141, 128 + SIGPIPE.  Its cards, one write a line, are about
    4.8 KiB at 40 columns, more than the pipe holds (4 KiB, its least) beyond the line read: the
    command still has lines to write when the reader stops, whatever the machine's pace."""
    first, status, stderr = _first_line_then_stop(["models"], {**os.environ, "COLUMNS": "40"})
    assert first.split()[0] == b"name"
    assert (status, stderr) == (141, b""), stderr


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="a pipe's size is set on Linux alone")
@pytest.mark.parametrize("unbuffered", ["1", None])
def test_one_large_write_whose_reader_stops_ends_the_command_as_git_ends(unbuffered: str | None) -> None:
    """``PYTHONUNBUFFERED=1 geosr models --json | head -1`` (a container's setting): its one write
    of 38 KiB, of which the 4 KiB pipe took a part, was cut short without an error, exit status 0;
    an unbuffered stdout's write is not checked for what it took.  It now ends with 141, as
    buffered."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered is not None:
        env["PYTHONUNBUFFERED"] = unbuffered
    first, status, stderr = _first_line_then_stop(["models", "--json"], env)
    assert first == b"["
    assert (status, stderr) == (141, b""), stderr


def test_a_stderr_whose_reader_is_gone_ends_the_command_with_the_pipes_status(
    make_raster, tmp_path: Path
) -> None:
    """``geosr run a.tif -s 3 2>&1 | head -0``: the warning that cnnrnn-fast has no x3 weights
    met a closed pipe, and the flush of stderr as the command ended made its status 120, where
    the README gives 1 for a pipe whose reader stops early."""
    src = make_raster(height=16, width=16)
    out = tmp_path / "out.tif"
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "geosr", "run", str(src), "-m", "cnnrnn-fast", "-s", "3", "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=writer,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stdout) == (1, "")
    assert not out.exists()
