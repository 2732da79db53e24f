"""`spark-nb COMMAND --help` prints for every command: argparse formats each help string with %, so a bare "%" in
one ("% of the roofline") turned `spark-nb bench --help` into a traceback."""
from __future__ import annotations

import argparse

import pytest

from spark_nb import cli


def _commands():
    subparsers = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(subparsers.choices)


@pytest.mark.parametrize("command", [None, *_commands()])
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"] if command is None else [command, "--help"])
    assert done.value.code == 0
    assert "usage: spark-nb" in capsys.readouterr().out
