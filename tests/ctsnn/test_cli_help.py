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


def test_output_piped_into_a_reader_that_closes_early_is_not_an_error():
    """`ctsnn train --list | head -1` must not print a BrokenPipeError traceback."""
    import subprocess
    import sys
    code = "import sys; from ctsnn.cli import main; sys.exit(main(['train', '--list']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away before the writer has finished
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
