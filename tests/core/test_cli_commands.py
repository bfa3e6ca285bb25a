"""Commands beyond generation come from ``cadenza.commands`` entry points, a third party's too."""

from __future__ import annotations

import argparse

import entrypoints

from cadenza.core.cli import main as cli_main
from cadenza.core.cli.command import Command

RAN: list[argparse.Namespace] = []


def define_echo(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    echo = sub.add_parser("echo", help="say a word back")
    echo.add_argument("word")
    return echo


def run_echo(args: argparse.Namespace) -> int:
    RAN.append(args)
    print(args.word.upper())
    return 0


ECHO = Command("echo", f"{__name__}:run_echo", define_echo)
NOT_A_COMMAND = object()


def with_points(monkeypatch, *extra: entrypoints.EntryPoint) -> None:
    original = entrypoints.get_group_all
    installed = original("cadenza.commands")

    def get_group_all(group, *args, **kwargs):
        return installed + list(extra) if group == "cadenza.commands" else original(group, *args, **kwargs)

    monkeypatch.setattr(entrypoints, "get_group_all", get_group_all)


def test_the_workflows_are_installed_commands():
    names = [c.name for c in cli_main.installed_commands()]
    assert names == ["bench", "corpus", "demo", "detect", "download", "evaluate", "export", "fit-kmeans", "new-plugin",
                     "prepare", "train"]
    assert not set(names) & set(cli_main.COMMANDS)  # the core defines only its own


def test_a_third_party_command_is_listed_and_runs(monkeypatch, cli):
    with_points(monkeypatch, entrypoints.EntryPoint("echo", __name__, "ECHO"))
    parser = cli_main.build_parser()
    assert "echo" in parser.format_help()
    RAN.clear()
    code, out, err = cli("echo", "hello")
    assert (code, out.strip()) == (0, "HELLO") and RAN[0].word == "hello"


def test_a_broken_command_is_left_out_with_one_line(monkeypatch, cli):
    with_points(monkeypatch, entrypoints.EntryPoint("bad", __name__, "NOT_A_COMMAND"),
                entrypoints.EntryPoint("gone", "no_such_module_here", "COMMAND"),
                entrypoints.EntryPoint("clash", __name__, "CLASH"))
    code, out, err = cli("pipelines")
    assert code == 0 and "default" in out
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert "'bad'" in lines[0] and "is not a cadenza.core.cli.command.Command" in lines[0]
    assert "'gone'" in lines[1] and "ModuleNotFoundError" in lines[1]
    assert "'clash'" in lines[2] and "'generate' is already taken" in lines[2]


CLASH = Command("generate", f"{__name__}:run_echo", define_echo)
