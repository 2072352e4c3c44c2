"""The command line documents itself: every command and option has help, completion works."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from geosr.cli import _register_plugins, app


def test_every_command_and_option_has_help() -> None:
    _register_plugins()
    group = typer.main.get_command(app)
    names = set(group.commands)  # type: ignore[attr-defined]
    assert {"run", "info", "models", "compare", "train", "evaluate"} <= names
    checked = 0
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"geosr {name} has no help text"
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"geosr {name} {param.opts[0]} has no help text"
                checked += 1
    assert checked > 40


def test_the_command_run_many_times_in_one_process_has_each_command_once(monkeypatch, capsys) -> None:
    """Every main() attached train and evaluate again: a process that ran the command a
    thousand times (a notebook, this suite) held 2000 copies, and building the command from
    them took seconds, longer with every run.  Nor does rasterio's logger get a handler more."""
    from geosr.cli import main

    rasterio_log = logging.getLogger("rasterio")
    monkeypatch.setattr(sys, "argv", ["geosr", "--version"])
    with pytest.raises(SystemExit):
        main()
    handlers = list(rasterio_log.handlers)
    for _ in range(2):
        with pytest.raises(SystemExit):
            main()
    names = [command.name for command in app.registered_commands]
    assert names.count("train") == names.count("evaluate") == 1, names
    assert rasterio_log.handlers == handlers


def test_python_m_geosr_and_shell_completion() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "geosr", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout and "geosr" in result.stdout.lower()


def test_models_prints_the_bundled_model_card() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "cnnrnn-fast x4" in result.output and "model card" in result.output
    for field in ("bands", "normalisation", "training data", "validation"):
        assert field in result.output


def test_models_keeps_the_names_whole_in_a_narrow_terminal() -> None:
    """At 50 columns the table cut the names --model takes to 'cnnrnn-f…' and 'edsr-bas…'."""
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "50"})
    assert result.exit_code == 0, result.output
    table = result.output.split("(model card)")[0].splitlines()
    rows = [line.split()[0] for line in table if line[:2].strip()]  # a row's first line
    assert {"cnnrnn-fast", "cnnrnn-best", "edsr-baseline", "bicubic"} <= set(rows), rows


def test_models_prints_a_plain_table_as_the_readme_shows() -> None:
    """Piped, the table was framed in box-drawing characters (┏━┃│└), which the README's
    example and geosr info do without."""
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    table = result.output.split("(model card)")[0]
    assert not set("┏━┳┃┡╇│└┴┘─") & set(table), table
    lines = table.splitlines()
    assert lines[0].split() == ["name", "bundled", "scales", "description", "validation"]
    assert lines[1].split()[:3] == ["cnnrnn-fast", "x2,", "x4"]


def test_models_cards_wrap_under_their_values_without_trailing_spaces() -> None:
    """Piped (80 columns), a card's long training-data line wrapped to column 0, outside
    the card, with '; ' left at the end of each line."""
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if line != line.rstrip()] == []
    card = lines[next(i for i, line in enumerate(lines) if line.endswith("(model card)")) + 1 :]
    for line in card[: card.index("")]:
        assert line.startswith("  "), line
        assert line[2] != " " or line.startswith(" " * 17), line


def test_version_names_geosr_and_the_libraries_without_loading_torch() -> None:
    # --help and --version must answer at once: torch (about 2 s to import) loads
    # only when a command needs a model.
    code = (
        "import sys; from geosr.cli import main; sys.argv = ['geosr', '--version']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code, 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    import rasterio

    import geosr

    first, last = result.stdout.strip().splitlines()[0], result.stdout.strip().splitlines()[-1]
    assert (
        first.startswith(f"geosr {geosr.__version__} (torch ")
        and f"GDAL {rasterio.__gdal_version__}" in first
    )
    assert last in ("exit 0 False", "exit None False"), result.stdout


def test_a_cog_run_loads_neither_xarray_nor_scipy(make_raster, tmp_path) -> None:
    # Every `geosr run` paid about 0.5 s of imports (xarray, rioxarray, pandas,
    # scipy.special, scipy.ndimage) that only a Zarr output, training or nodata
    # filling use: they load where they are needed.  So do the STAC and quicklook
    # writers (50-75 ms with pystac), only for --stac and --quicklook.
    src = make_raster("in.tif", width=64, height=64)
    code = (
        "import sys; from geosr.cli import main\n"
        f"sys.argv = ['geosr', 'run', {str(src)!r}, '--scale', '2', '--model', 'bicubic']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('xarray', 'rioxarray', 'pandas', 'scipy', 'pystac', 'geosr.stac', "
        "'geosr.quicklook') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert (tmp_path / "in_x2.tif").exists(), result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_the_command_tunes_the_allocator_before_anything_starts_threads() -> None:
    # geosr.allocator: a thread that allocates before the tuning keeps an arena of its
    # own, which later worker threads share; so the command tunes first, before numpy.
    code = (
        "import sys; from geosr.cli import main; from geosr.allocator import keep_freed_memory\n"
        "assert 'numpy' not in sys.modules and 'torch' not in sys.modules\n"
        "sys.argv = ['geosr', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('tuned', keep_freed_memory.cache_info().currsize)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "tuned 1"


def test_the_version_in_tags_and_cards_is_the_installed_packages() -> None:
    # geosr.__version__ (provenance tags, model cards) is written by hand beside
    # pyproject.toml's; the installed metadata comes from the latter.
    from importlib import metadata

    import geosr
    from geosr.models.card import geosr_version

    assert geosr.__version__ == geosr_version() == metadata.version("geosr")


def test_the_tile_minimum_in_help_is_the_one_enforced() -> None:
    # --help said [x>=1] for --tile (typer's min=1) while every edge under 8 is refused.
    _register_plugins()  # evaluate is a plugin: alone (pytest -k), this test found no such command
    for command in ("run", "info", "evaluate"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        line = next(text for text in result.output.splitlines() if "--tile" in text)
        assert "x>=1" not in line and "at least 8" in line, line


def test_help_on_an_80_column_terminal_cuts_no_word() -> None:
    # rich's help panels gave the help text 19 columns at 80: `--no-check-resour…`,
    # `minx,miny,maxx,ma…` and `<stem>_x<scale>.t…` could not be read there.
    _register_plugins()
    for command, words in (
        ("run", ("--no-check-resources", "minx,miny,maxx,maxy", "<stem>_x<scale>.tif")),
        ("train", ("(pipelines/*.toml)",)),
    ):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        assert "…" not in result.output, result.output
        assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
        for word in words:
            assert word in result.output, f"{word!r} not in geosr {command} --help"


README = Path(__file__).resolve().parents[1] / "README.md"


def _command_options(name: str) -> set[str]:
    """Every spelling of every option of ``geosr NAME`` (``--stac`` and ``--no-stac``, ``-o``)."""
    _register_plugins()
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    named = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}
    return named | {"--help"}  # click adds it when it parses


def test_the_readme_synopsis_of_run_names_every_option() -> None:
    # The synopsis left out --scheduler and --workers, which the README shows just above it; it
    # named the inputs 'INPUT...' where --help says 'INPUTS...'.
    text = README.read_text(encoding="utf-8")
    usage = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output.splitlines()[0]
    arguments = usage.split(" [OPTIONS] ")[-1]  # as --help names them: 'INPUTS...'
    synopsis = re.search(rf"`geosr run {re.escape(arguments)} (.*?)`", text, re.DOTALL)
    assert synopsis is not None, f"the README's synopsis does not begin `geosr run {arguments}`"
    named = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", synopsis.group(1)))
    options = _command_options("run")
    assert named <= options, f"not options of geosr run: {sorted(named - options)}"
    _register_plugins()
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    left_out = [
        p.opts[0] for p in command.params if p.param_type_name == "option" and p.name != "help"
        and not named & {*p.opts, *p.secondary_opts}
    ]  # fmt: skip
    assert left_out == [], f"geosr run options the README's synopsis leaves out: {left_out}"


def test_the_readme_examples_use_only_options_their_command_has() -> None:
    text = README.read_text(encoding="utf-8")
    lines = [
        line.split("#")[0]
        for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
        for line in block.splitlines()
        if line.startswith("geosr ")
    ]
    lines += re.findall(r"^\$ (geosr [^\n]*)", text, re.MULTILINE)  # a shell session's commands
    lines += re.findall(r"`(geosr [a-z]+\b[^`]*)`", text)  # and those in the prose
    assert len(lines) > 40
    for line in lines:
        command = line.split()[1]
        used = set(re.findall(r"(?<![\w/:-])(--?[a-z][\w-]*)", line))
        unknown = used - _command_options(command)
        assert not unknown, f"README: {line.strip()!r} uses {sorted(unknown)}, not options of geosr {command}"


def test_the_tests_the_readme_names_exist() -> None:
    # The Guarantees table names the test that proves each promise: a renamed test left it
    # pointing at nothing.
    text = README.read_text(encoding="utf-8")
    module = None
    named = []
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(::\w+)?`", text):
        if match.group(1):
            module = README.parent / match.group(1)
            assert module.exists(), match.group(1)
        if match.group(2):
            assert module is not None, match.group(0)
            assert f"def {match.group(2)[2:]}(" in module.read_text(encoding="utf-8"), match.group(0)
            named.append(match.group(2))
    # A table written another way (no backquotes, 'file.py :: test') is matched by nothing.
    assert len(named) >= 10, f"the README's Guarantees table names {len(named)} tests as `tests/x.py::test`"


def test_the_readmes_rioxarray_reads_run_without_a_warning(make_raster) -> None:
    """The README's cluster example read its scene with open_rasterio(chunks=True): rioxarray
    hands xarray those chunks as a tuple, which xarray deprecates (a FutureWarning on every run,
    an error in a release to come)."""
    import rioxarray

    text = README.read_text(encoding="utf-8")
    keywords = re.findall(r'rioxarray\.open_rasterio\("[^"]+"((?:, [^()]*)?)\)', text)
    assert len(keywords) >= 2, keywords
    scene = str(make_raster(count=1, height=20, width=30))
    for given in keywords:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            eval(f"rioxarray.open_rasterio(scene{given})", {"rioxarray": rioxarray, "scene": scene})


def test_the_scales_in_help_are_those_the_models_take() -> None:
    # --help said (2, 3, 4) while every model takes 2..8 and the README runs --scale 6.
    from geosr.models import MAX_SCALE, MIN_SCALE

    _register_plugins()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for command in ("run", "info", "evaluate", "train"):
        option = next(p for p in commands[command].params if p.name == "scale")
        assert f"{MIN_SCALE}..{MAX_SCALE}" in option.help, f"geosr {command} --scale: {option.help}"


def test_the_devices_in_help_are_those_a_run_takes() -> None:
    # --help said 'auto, cpu or cuda' while cuda:N runs on GPU N; without CUDA, --device cuda:1
    # was refused as '--device cuda was asked for', and 'cudax' the same way.
    import torch

    from geosr.errors import OptionError
    from geosr.predictor import resolve_device

    _register_plugins()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for command in ("run", "info", "evaluate", "train"):
        option = next(p for p in commands[command].params if p.name == "device")
        assert "cuda:N" in option.help, f"geosr {command} --device: {option.help}"
    with pytest.raises(OptionError, match="'cudax' is not known"):
        resolve_device("cudax")
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="--device cuda:1 was asked for but no CUDA GPU is visible"):
            resolve_device("cuda:1")


def test_repeatable_options_show_one_value() -> None:
    # --help showed '--frame <list[str]>' (and --lr, --hr, --val): read as a list, 'geosr run
    # ref.tif --frame d2.tif d3.tif' takes d3.tif for a second input to super-resolve.
    _register_plugins()
    for command in ("run", "info", "train", "evaluate"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        options = [line for line in result.output.splitlines() if line.lstrip().startswith("-")]
        assert not [line for line in options if "list[" in line], f"geosr {command} --help: {options}"


def test_the_defaults_in_help_are_those_a_run_takes() -> None:
    # geosr train's help named no default: where the run folder goes (runs/train) or how many
    # steps run (2000) was found out by running; geosr run and info did not name the model a
    # run takes without --model.
    from geosr.models import DEFAULT_MODEL
    from geosr.train.config import DataConfig, OptimConfig, TrainConfig

    _register_plugins()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    helps = {p.name: " ".join(p.help.split()) for p in commands["train"].params if p.help}
    loss = ",".join(f"{term}={weight:g}" for term, weight in TrainConfig().loss.items())
    expected = {
        "scale": TrainConfig.scale,
        "model": TrainConfig.name,
        "steps": TrainConfig.steps,
        "batch_size": TrainConfig.batch_size,
        "lr_chip": DataConfig.lr_chip,
        "learning_rate": OptimConfig.lr,
        "loss": loss,
        "seed": TrainConfig.seed,
        "device": TrainConfig.device,
        "precision": TrainConfig.precision,
        "val_every": TrainConfig.val_every,
        "checkpoint_every": TrainConfig.checkpoint_every,
        "output": TrainConfig.output,
    }
    for name, value in expected.items():
        assert f"(default {value}, or the recipe's" in helps[name], f"geosr train {name}: {helps[name]}"
    for command in ("run", "info", "evaluate"):
        option = next(p for p in commands[command].params if p.name == "model")
        assert re.search(rf"default:? {DEFAULT_MODEL}\b", option.help), f"geosr {command} -m: {option.help}"


def test_evaluate_says_the_tile_and_batch_defaults_a_run_takes() -> None:
    # geosr evaluate's --tile and --batch-size named no default, where geosr run's, the same
    # options of the same runs, say them.
    from geosr.options import DEFAULT_TILE

    _register_plugins()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("tile", "batch_size", "device", "precision"):
        helps = [next(p for p in commands[c].params if p.name == name).help for c in ("run", "evaluate")]
        assert helps[0] == helps[1], f"{name}: {helps}"
    tile = next(p for p in commands["evaluate"].params if p.name == "tile")
    assert f"default {DEFAULT_TILE}" in tile.help


def test_every_command_says_the_files_its_variable_reads() -> None:
    """geosr evaluate --variable said 'Variable to read from Zarr HR stores (Wald)', and it picks
    the variable of a netCDF or HDF5 file of several too, as geosr run's and compare's say."""
    _register_plugins()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for command in ("run", "info", "compare", "evaluate"):
        option = next(p for p in commands[command].params if p.name == "variable")
        assert "Zarr" in option.help and "netCDF/HDF5" in option.help, f"geosr {command}: {option.help}"


PYTHON_API = (
    ("geosr", "upscale_file"),
    ("geosr", "upscale"),
    ("geosr", "load_model"),
    ("geosr.evaluation", "evaluate_wald"),
    ("geosr.evaluation", "evaluate_paired"),
    ("geosr.train", "train"),
)


def _parameters_documented(doc: str) -> dict[str, str]:
    """Each name of a numpy-style Parameters section, with its entry's first line."""
    section = doc.split("Parameters\n----------\n", 1)[1]
    section = re.split(r"\n\S[^\n]*\n-{3,}\n", section, maxsplit=1)[0]  # up to the next section
    entries: dict[str, str] = {}
    for line in section.splitlines():
        if line and not line[0].isspace():
            names, _, kind = line.partition(" : ")
            for name in names.split(", "):
                entries[name.strip()] = kind if "," not in names else ""
    return entries


@pytest.mark.parametrize(("module", "name"), PYTHON_API)
def test_the_python_api_documents_each_parameter_and_its_default(module: str, name: str) -> None:
    """help(evaluate_wald) and help(evaluate_paired) named neither border (16 HR pixels left
    out at each edge) nor its default; upscale_file's scale and train's resume gave no default."""
    import importlib
    import inspect

    func = getattr(importlib.import_module(module), name)
    parameters = inspect.signature(func).parameters.values()
    given = {("**" if p.kind is p.VAR_KEYWORD else "") + p.name: p.default for p in parameters}
    documented = _parameters_documented(inspect.getdoc(func) or "")
    assert sorted(documented) == sorted(given), name
    for parameter, default in given.items():
        kind = documented[parameter]
        if kind and default not in (None, inspect.Parameter.empty):
            assert kind.endswith(f", default {default}"), f"{name}({parameter}=...): {kind!r}"


def test_help_names_the_arguments_as_they_are_typed() -> None:
    # typer's help showed Python's names: 'Usage: geosr run [OPTIONS] {inputs}...' and, under
    # Arguments, 'inputs... <list[str]>', 'lr <str>', 'hr_rasters... <list[str]>'.
    _register_plugins()
    expected = {
        "run": ("[OPTIONS] INPUTS...", ["INPUTS..."]),
        "info": ("[OPTIONS] INPUT", ["INPUT"]),
        "models": ("[OPTIONS]", []),
        "compare": ("[OPTIONS] LR SR", ["LR", "SR"]),
        "train": ("[OPTIONS] [HR]...", ["HR..."]),
        "evaluate": ("[OPTIONS] [HR]...", ["HR..."]),
    }
    for command, (usage, names) in expected.items():
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        first = result.output.splitlines()[0]
        assert first.endswith(f" {command} {usage}"), first
        assert "list[" not in result.output, result.output
        arguments = result.output.split("Arguments:\n")[-1].split("Options:")[0] if names else ""
        rows = [line.split()[0] for line in arguments.splitlines() if line[2:3].strip()]
        assert rows == names, arguments
        assert not re.search(r"<\w+>", arguments), arguments


def test_help_shows_option_values_in_one_spelling() -> None:
    # Options took '<path>' in run and '<Path>' (Python's class) in train and evaluate, an
    # '<int range>' where min= is set (the range is said in [x>=1] already), and --model '<str>'.
    _register_plugins()
    for command in ("run", "info", "train", "evaluate"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for odd in ("<Path>", " range>"):
            assert odd not in result.output, f"geosr {command} --help: {odd}"
        assert "-m, --model <name>" in result.output, result.output
    # Files given as text were '<str>': geosr compare's -o and --hr, evaluate's --json and
    # --plot, run's --aoi; train's --init, a file or a bundled model's name.
    paths = {"compare": ("-o, --output", "--hr"), "evaluate": ("--json", "--plot"), "run": ("--aoi",)}
    for command, options in paths.items():
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        for option in options:
            assert f"  {option} <path>  " in result.output, f"geosr {command} {option}: {result.output}"
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "  --init <weights>  " in result.output, result.output
