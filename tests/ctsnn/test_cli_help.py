"""The command-line help is plain text: no reStructuredText markup leaks into it."""

from __future__ import annotations

import re

import pytest

from ctsnn.cli import main

MARKUP = re.compile(r"``|:(func|class|mod|meth|data|attr):`")


def help_text(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_of_every_command_is_plain_text(capsys):
    top = help_text([], capsys)
    commands = re.search(r"\{([a-z,]+)\}", top).group(1).split(",")
    assert "demo" in commands and "bench" in commands
    for argv in [[]] + [[c] for c in commands]:
        text = help_text(argv, capsys)
        assert not MARKUP.search(text), (argv, MARKUP.search(text).group(0))
        assert text.strip()
