"""Command-line conventions: --version, --help with an example, stdout only data, --quiet, --progress."""
from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from ltextract import __version__
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import run_cli

COMMANDS = ("build", "verify", "fetch", "index", "synth", "stats")


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"ltextract, version {__version__}"


@pytest.mark.parametrize("command", ("",) + COMMANDS)
def test_help_has_an_example(command):
    r = run_cli(*([command] if command else []), "--help")
    assert r.returncode == 0 and r.stderr == ""
    example = r.stdout.split("Example:", 1)[1].strip().splitlines()[0].strip()
    assert example.startswith(f"ltextract {command}".strip())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_quiet(command):
    assert "--quiet" in run_cli(command, "--help").stdout


def test_every_option_has_help_text():
    from ltextract.cli import cli

    bare = [f"{name} {opt}" for name, command in cli.commands.items() for p in command.params
            if isinstance(p, click.Option) and not p.help for opt in p.opts[:1]]
    assert bare == []


def test_readme_quotes_what_a_stop_prints():
    """Ctrl-C and SIGTERM print different words; the README shows both as the CLI prints them."""
    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    for word in ("interrupted", "terminated"):
        assert f"ltextract: {word}; " in readme, word
    assert "`ltextract: terminated; finished files are kept" in readme or "terminated; …" in readme


def test_completion_script_is_offered():
    r = run_cli(env={"_LTEXTRACT_COMPLETE": "bash_source"})
    assert r.returncode == 0 and "complete" in r.stdout and "_ltextract_completion" in r.stdout


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("cli") / "manual", SynthSpec(classes=4, seed=2))


def test_stdout_only_data_stderr_quiet(syn, tmp_path):
    env = {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "out"
    args = ("--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out)
    r = run_cli("build", *args, env=env)
    assert r.returncode == 0 and r.stdout == "" and "warning" in r.stderr  # custom lists
    r = run_cli("build", *args, "--json", "--quiet", env=env)
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads(r.stdout)["splits"]["train"]["files"] > 0
    r = run_cli("verify", out, "--quiet", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run_cli("index", "--manual-dir", syn.manual_dir, "--list", "--quiet", env=env)
    assert r.returncode == 0 and r.stderr == ""
    assert all(len(line.split("\t")) == 4 for line in r.stdout.splitlines())


def test_progress_bars_only_when_asked_off_a_terminal(syn, tmp_path):
    env = {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "out"
    args = ("--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out, "--split", "test")
    plain = run_cli("build", *args, env=env)
    assert plain.returncode == 0 and "B/s" not in plain.stderr
    shown = run_cli("verify", out, "--progress", env=env)
    assert shown.returncode == 0 and "verify:" in shown.stderr and "B/s" in shown.stderr
    both = run_cli("verify", out, "--progress", "--quiet", env=env)
    assert both.returncode == 0 and both.stderr == ""
