"""Several inputs in one ``geosr run``: each output as a run of its own, failures isolated."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosr.batch import batch_outputs, expand_inputs
from geosr.cli import main
from geosr.errors import InputError, OptionError


def run_cli(
    args: list[str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run ``geosr ARGS``; capture at the file-descriptor level, where the command's
    per-input error lines go (it keeps C libraries' own prints off the terminal)."""
    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capfd.readouterr()
    return (code if isinstance(code, int) else 0), captured.out, " ".join(captured.err.split())


def pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture
def scenes(make_raster) -> list[Path]:
    return [make_raster(f"tile_{i}.tif", height=40 + 7 * i, width=50, count=1 + i % 2) for i in range(3)]


def test_several_inputs_give_the_outputs_of_separate_runs(scenes, tmp_path, capfd, monkeypatch) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    code, out, err = run_cli(
        ["run", *map(str, scenes), "-o", str(folder), "--scale", "2", "--model", "bicubic"],
        capfd,
        monkeypatch,
    )
    assert code == 0, err
    written = [folder / f"tile_{i}_x2.tif" for i in range(3)]
    assert out.split() == list(map(str, written))
    for scene, batch_output in zip(scenes, written, strict=True):
        alone = tmp_path / f"alone_{scene.name}"
        code, _, err = run_cli(
            ["run", str(scene), "-o", str(alone), "--scale", "2", "--model", "bicubic"], capfd, monkeypatch
        )
        assert code == 0, err
        np.testing.assert_array_equal(pixels(batch_output), pixels(alone))


def test_a_quoted_glob_is_expanded_in_order(scenes, tmp_path: Path) -> None:
    assert expand_inputs([str(tmp_path / "tile_*.tif")]) == list(map(str, scenes))
    assert expand_inputs([str(scenes[1])]) == [str(scenes[1])]
    with pytest.raises(InputError, match=r"nothing\*\.tif: no file matches"):
        expand_inputs([str(tmp_path / "nothing*.tif")])


def test_a_bad_input_is_reported_and_the_others_still_run(scenes, tmp_path, capfd, monkeypatch) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    folder = tmp_path / "out"
    folder.mkdir()
    args = ["run", str(scenes[0]), str(broken), str(scenes[2]), "-o", str(folder), "--scale", "2"]
    code, out, err = run_cli([*args, "--model", "bicubic"], capfd, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error:") and "broken.tif: not a readable raster" in err
    assert "1 of 3 inputs failed (broken.tif)" in err and "the other 2 outputs are written" in err
    assert sorted(p.name for p in folder.iterdir()) == ["tile_0_x2.tif", "tile_2_x2.tif"]
    assert len(out.split()) == 2
    # One output written: it said "the other 1 outputs are written".
    args = ["run", str(broken), str(scenes[1]), "-o", str(folder), "--scale", "2", "--model", "bicubic"]
    code, out, err = run_cli(args, capfd, monkeypatch)
    assert code == 2 and "1 of 2 inputs failed (broken.tif), each reported above; the other output is" in err


def test_several_inputs_need_an_output_folder(scenes, tmp_path, capfd, monkeypatch) -> None:
    target = tmp_path / "one.tif"
    code, _, err = run_cli(["run", str(scenes[0]), str(scenes[1]), "-o", str(target)], capfd, monkeypatch)
    assert (
        code == 2
        and err.startswith("error:")
        and "one.tif: with 2 inputs, --output must be an existing folder" in err
    )
    assert not target.exists() and not list(tmp_path.glob("*_x4.tif"))


def test_two_inputs_writing_the_same_output_are_refused_before_any_work(make_raster, tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_raster("a/scene.tif")
    b = make_raster("b/scene.tif")
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OptionError, match="would both be written to"):
        batch_outputs([str(a), str(b)], folder, 4)
    assert batch_outputs([str(a), str(b)], None, 4) == [a.parent / "scene_x4.tif", b.parent / "scene_x4.tif"]


def test_an_output_that_is_another_input_is_refused_before_any_work(
    make_raster, tmp_path, capfd, monkeypatch
) -> None:
    """``geosr run a.tif a_x2.tif --scale 2 --overwrite``: the first output replaced the second
    input (3 bands here) before it was read, and a_x2_x2.tif was made from a.tif's output."""
    first = make_raster("a.tif")
    second = make_raster("a_x2.tif", count=3)
    before = second.read_bytes()
    args = ["run", str(first), str(second), "--scale", "2", "--model", "bicubic", "--overwrite"]
    code, out, err = run_cli(args, capfd, monkeypatch)
    assert code == 2 and out == "" and "another input of this run" in err, err
    assert second.read_bytes() == before
    assert not (tmp_path / "a_x2_x2.tif").exists()


def test_one_input_into_a_folder(scenes, tmp_path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    assert batch_outputs([str(scenes[0])], folder, 3) == [folder / "tile_0_x3.tif"]
    zarr_output = tmp_path / "existing.zarr"
    zarr_output.mkdir()  # a Zarr output is a folder too: still the output itself
    assert batch_outputs([str(scenes[0])], zarr_output, 3) == [zarr_output]


def test_frames_belong_to_one_scene(scenes, tmp_path, capfd, monkeypatch) -> None:
    args = ["run", str(scenes[0]), str(scenes[1]), "--frame", str(scenes[2])]
    code, _, err = run_cli(args, capfd, monkeypatch)
    assert code == 2 and err.startswith("error:") and "--frame" in err
    assert not list(tmp_path.glob("*_x4.tif"))


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--batch-size", "0"], "--batch-size 0"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["GEOSR_FAULT_AT=bogus"], "GEOSR_FAULT_AT"),
    ],
)
def test_an_option_every_input_would_fail_on_is_one_line(
    scenes, tmp_path, capfd, monkeypatch, flags, needle
) -> None:
    """Each input of a batch reported the same bad option, one line per file (a thousand
    lines for 'archive/*.tif'), then that all had failed: it is one line, before any input."""
    if flags[0].startswith("GEOSR_"):
        import geosr.faults

        monkeypatch.setattr(geosr.faults, "_target", False)  # read again from the environment
        monkeypatch.setenv(*flags[0].split("="))
        flags = []
    code, out, err = run_cli(["run", str(tmp_path / "tile_*.tif"), *flags], capfd, monkeypatch)
    assert code == 2 and out == "", err
    assert err.count("error:") == 1 and needle in err and "tile_" not in err, err
    assert not list(tmp_path.glob("*_x4.tif"))


def test_a_warning_every_input_gets_is_one_line(scenes, tmp_path, capfd, monkeypatch) -> None:
    """At a scale without bundled weights each input of a batch printed the same warning
    line: once per file of 'archive/*.tif'."""
    code, out, err = run_cli(["run", str(tmp_path / "tile_*.tif"), "--scale", "3"], capfd, monkeypatch)
    assert code == 0 and len(out.split()) == 3, err
    assert err.count("no bundled weights") == 1, err


def test_the_same_glob_again_does_not_take_the_outputs_as_inputs(
    scenes, tmp_path, capfd, monkeypatch
) -> None:
    # Outputs go beside their inputs, so a second run of the same glob (the README's
    # `--resume` no-op, or another --scale) matched them too: tile_0_x2.tif became
    # tile_0_x2_x2.tif, 4x the pixels of the output.
    pattern = str(tmp_path / "tile_*.tif")
    args = ["run", pattern, "--scale", "2", "--model", "bicubic"]
    code, out, err = run_cli(args, capfd, monkeypatch)
    assert code == 0, err
    code, out, err = run_cli([*args, "--resume"], capfd, monkeypatch)
    assert code == 0, err
    assert out.split() == [str(tmp_path / f"tile_{i}_x2.tif") for i in range(3)]
    assert "skipping 3 files that" in err and "tile_0_x2.tif" in err
    code, _, err = run_cli(
        ["run", pattern, "--scale", "3", "--model", "bicubic", "--stac"], capfd, monkeypatch
    )
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("tile_*_x*")) == sorted(
        [f"tile_{i}_x2.tif" for i in range(3)]
        + [f"tile_{i}_x3.tif" for i in range(3)]
        + [f"tile_{i}_x3.stac.json" for i in range(3)]
    )
    # Named without a pattern, an output is an input like any other.
    assert expand_inputs([str(tmp_path / "tile_0_x2.tif")]) == [str(tmp_path / "tile_0_x2.tif")]


def test_a_recursive_glob_again_does_not_take_its_output_folder_for_inputs(
    scenes, tmp_path, capfd, monkeypatch
) -> None:
    # With -o a folder under the glob's root, the outputs are not beside their inputs, so
    # the second run of 'archive/**/*.tif' took out/tile_0_x2.tif for an input.
    folder = tmp_path / "out"
    folder.mkdir()
    pattern = str(tmp_path / "**" / "tile_*.tif")
    args = ["run", pattern, "-o", str(folder), "--scale", "2", "--model", "bicubic"]
    code, _, err = run_cli(args, capfd, monkeypatch)
    assert code == 0, err
    code, out, err = run_cli([*args, "--resume"], capfd, monkeypatch)
    assert code == 0, err
    assert out.split() == [str(folder / f"tile_{i}_x2.tif") for i in range(3)]
    assert "skipping 3 files that" in err
    assert sorted(p.name for p in folder.iterdir()) == [f"tile_{i}_x2.tif" for i in range(3)]


def test_one_output_spelled_two_ways_is_refused_before_any_work(make_raster, tmp_path, monkeypatch) -> None:
    # Same folder, same stem, one path relative and one absolute: without the check,
    # the second run replaced the first's output under --overwrite.
    tif = make_raster("scene.tif")
    other = make_raster("scene.img")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError, match="would both be written to"):
        batch_outputs(["scene.tif", str(other)], None, 4)
    (tmp_path / "linked").symlink_to(tmp_path)
    with pytest.raises(OptionError, match="would both be written to"):
        batch_outputs([str(tif), str(tmp_path / "linked" / "scene.img")], None, 4)


def test_a_folder_input_is_told_to_give_a_glob(scenes, tmp_path, capfd, monkeypatch) -> None:
    # Before: "not a readable raster (...); check that the file is complete", as for a corrupt file.
    folder = tmp_path / "out"
    folder.mkdir()
    code, out, err = run_cli(
        ["run", str(tmp_path), str(scenes[0]), "-o", str(folder), "--model", "bicubic"], capfd, monkeypatch
    )
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path}: a folder, not a raster GDAL reads" in err and f"'{tmp_path}/*.tif'" in err
    assert out.split() == [str(folder / "tile_0_x4.tif")]


def test_one_input_into_a_missing_folder_is_told_folders_work(scenes, tmp_path, capfd, monkeypatch) -> None:
    # '-o out/' for a folder not made yet said only "unsupported output suffix '(none)'; use one of
    # .tif, .tiff, .zarr", as if no folder could be given; the '/' says it is one to create.
    args = ["run", str(scenes[0]), "-o", f"{tmp_path / 'out'}/", "--model", "bicubic"]
    code, _, err = run_cli(args, capfd, monkeypatch)
    assert code == 2 and "no such folder; create it first" in err
    assert f"mkdir -p {tmp_path / 'out'}" in err and not (tmp_path / "out").exists()


def test_a_quoted_glob_under_home_is_expanded(scenes, tmp_path, monkeypatch) -> None:
    # 'geosr run "~/archive/*.tif"': the quotes keep the shell from expanding the ~ as well,
    # and the glob matched nothing ("no file matches this pattern").
    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_inputs(["~/tile_*.tif"]) == [str(s) for s in scenes]


def test_one_file_given_twice_runs_once(scenes, tmp_path, capfd, monkeypatch) -> None:
    # A glob and a file it matches: before, the whole run was refused ("tile_0.tif and
    # tile_0.tif would both be written ...; give inputs with different names").
    folder = tmp_path / "out"
    folder.mkdir()
    args = ["run", str(tmp_path / "tile_*.tif"), str(scenes[0]), "-o", str(folder), "--model", "bicubic"]
    code, out, err = run_cli([*args, "--scale", "2"], capfd, monkeypatch)
    assert code == 0, err
    assert f"warning: {scenes[0]}: the same file as {scenes[0]}, given before; it runs once" in err
    assert out.split() == [str(folder / f"tile_{i}_x2.tif") for i in range(3)]
    # Given a third time, spelled another way: one line for each repeat, naming the first.
    again = [*args, f"{tmp_path}/./{scenes[0].name}", "--scale", "2", "--overwrite"]
    code, out, err = run_cli(again, capfd, monkeypatch)
    assert code == 0, err
    assert err.count("given before; it runs once") == 2 and "given twice" not in err, err
    assert f"warning: {tmp_path}/./{scenes[0].name}: the same file as {scenes[0]}, given before" in err


def test_inputs_of_one_name_in_several_folders_are_told_apart(
    make_raster, tmp_path, capfd, monkeypatch
) -> None:
    """A batch of 'granules/*/B04.tif' named each input 'B04.tif': its progress lines read
    '[1/3] B04.tif' ... '[3/3] B04.tif', and its summary '1 of 3 inputs failed (B04.tif)'."""
    import geosr.progress

    monkeypatch.setattr(geosr.progress, "QUIET_S", 0.0)
    for granule in ("a", "b", "c"):
        (tmp_path / granule).mkdir()
        make_raster(f"{granule}/B04.tif", height=16, width=16)
    (tmp_path / "b" / "B04.tif").write_bytes(b"not a raster")
    code, _, err = run_cli(
        ["run", str(tmp_path / "*" / "B04.tif"), "-m", "bicubic", "-s", "2"], capfd, monkeypatch
    )
    assert code == 2, err
    assert "geosr: [1/3] a/B04.tif: " in err and "geosr: [3/3] c/B04.tif: " in err, err
    assert "1 of 3 inputs failed (b/B04.tif)" in err, err


def test_a_glob_through_a_folder_with_brackets_says_how_to_match_them(make_raster, tmp_path: Path) -> None:
    """'S2 [2020]/*.tif' matched nothing (a glob reads '[2020]' as one of 2 and 0), and the message
    said only to check the folder, which exists and holds the files."""
    (tmp_path / "S2 [2020]").mkdir()
    make_raster("S2 [2020]/a.tif", height=16, width=16)
    pattern = str(tmp_path / "S2 [2020]" / "*.tif")
    with pytest.raises(InputError, match=r"write \[\[\] for a '\[' of a name \(.*S2 \[\[\]2020\]/\*\.tif\)"):
        expand_inputs([pattern])
    assert expand_inputs([pattern.replace("[", "[[]")]) == [str(tmp_path / "S2 [2020]" / "a.tif")]


def test_a_tilde_the_shell_left_is_the_home_folder(make_raster, tmp_path, capfd, monkeypatch) -> None:
    """The shell expands '~' only at a word's start: quoted, or after '--output=', it came through,
    so '~/scene.tif' was 'no such file' (a quoted glob's '~' was expanded), and '--output=~/out/sr.tif'
    was refused with 'mkdir -p ~/out', which made the home folder's, not the one it wanted."""
    from geosr.cli_types import given_path

    make_raster("scene.tif", height=30, width=30)
    make_raster("date2.tif", height=30, width=30)
    (tmp_path / "out").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path))
    args = ["run", "~/scene.tif", "--output=~/out/sr.tif", "--frame", "~/date2.tif", "--scale", "2"]
    code, out, err = run_cli([*args, "--model", "bicubic"], capfd, monkeypatch)
    assert code == 0, err
    assert out.strip() == str(tmp_path / "out" / "sr.tif")
    assert pixels(tmp_path / "out" / "sr.tif").shape == (1, 60, 60)
    assert not (work / "~").exists()
    assert given_path("~/weights") == tmp_path / "weights"  # --json, --workdir, --lr, --hr...


def test_a_pattern_inside_an_archive_is_told_to_be_no_glob(make_raster, tmp_path, capfd, monkeypatch) -> None:
    """A URL or /vsi path is taken as it is (274eb2f), so '/vsizip//data/a.zip/*.tif' failed as
    'not a readable raster (...); check that the file is complete and in a format GDAL reads'."""
    import zipfile

    src = make_raster(height=30, width=30)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zipped:
        zipped.write(src, "B04.tif")
    pattern = f"/vsizip/{tmp_path / 'a.zip'}/*.tif"
    code, _, err = run_cli(["run", pattern, "--scale", "2", "--model", "bicubic"], capfd, monkeypatch)
    assert code == 2 and err.startswith(f"error: {pattern}: no such raster"), err
    assert "not inside an archive or at a URL: name each file" in err and "format GDAL reads" not in err


def test_an_archive_members_question_mark_or_bracket_is_no_glob(
    make_raster, tmp_path, capfd, monkeypatch
) -> None:
    """'/vsizip//data/a.zip/B04?[1].tif' was taken for a glob, which no file on disk matches:
    'no file matches this pattern', for a member GDAL reads."""
    import zipfile

    src = make_raster(height=30, width=30)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zipped:
        zipped.write(src, "B04?[1].tif")
    member = f"/vsizip/{tmp_path / 'a.zip'}/B04?[1].tif"
    assert expand_inputs([member, f"zip://{tmp_path / 'a.zip'}!/B0?.tif"])[0] == member
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["run", member, "--scale", "2", "--model", "bicubic"], capfd, monkeypatch)
    assert code == 0, err
    assert pixels(tmp_path / out.strip()).shape == (1, 60, 60)


def test_one_output_skipped_by_a_glob_is_counted_in_words(tmp_path, recwarn) -> None:
    """'skipping 1 file(s) that the pattern matches ...' read as a form: now '1 file', '2 files'."""
    for name in ("a.tif", "a_x2.tif", "b.tif", "b_x2.tif", "b_x4.tif"):
        (tmp_path / name).write_bytes(b"")
    for pattern, said in (("a*.tif", "skipping 1 file that"), ("b*.tif", "skipping 2 files that")):
        recwarn.clear()
        assert expand_inputs([str(tmp_path / pattern)]) == [str(tmp_path / pattern[0]) + ".tif"]
        assert any(said in str(w.message) for w in recwarn), [str(w.message) for w in recwarn]
