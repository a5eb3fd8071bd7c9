"""The recipes' shared option parser (recipes/common/parse_options.sh): every variable set before it
is an option; anything else stops the script naming it."""

import subprocess
from pathlib import Path

import pytest

PARSER = Path(__file__).resolve().parents[1] / "recipes" / "common" / "parse_options.sh"
SCRIPT = f'set -euo pipefail; stage=0; adapt_domains=room; train_args=""; . {PARSER}; '
SCRIPT += 'echo "$stage|$adapt_domains|$train_args"'


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", SCRIPT, "run.sh", *args], capture_output=True, text=True)


def test_options_set_the_variables_in_both_spellings() -> None:
    out = _run("--stage", "4", "--adapt-domains", "mic room", "--train_args=--train.epochs 3 --x=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "4|mic room|--train.epochs 3 --x=1\n"
    assert _run().stdout == "0|room|\n"  # no option: the defaults


@pytest.mark.parametrize(
    ("args", "error"),
    [(("--stgae", "4"), "run.sh: unknown option --stgae"),
     (("--stage",), "run.sh: option --stage needs a value"),
     (("4",), "run.sh: unexpected argument '4'"),
     (("--PATH", "/x"), "run.sh: unknown option --PATH")],
)  # fmt: skip
def test_a_bad_option_stops_with_exit_code_2_naming_it(args: tuple[str, ...], error: str) -> None:
    out = _run(*args)
    assert out.returncode == 2 and error in out.stderr and out.stdout == ""


def test_a_wrapper_that_declares_other_options_gets_the_unknown_ones_as_given() -> None:
    script = f'set -euo pipefail; stage=0; other_options=(); . {PARSER}; echo "$stage|${{other_options[*]}}"'
    out = subprocess.run(
        ["bash", "-c", script, "run.sh", "--adapt-seeds", "1 2", "--stage", "3", "--train_utts=50"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "3|--adapt-seeds 1 2 --train_utts=50\n"
