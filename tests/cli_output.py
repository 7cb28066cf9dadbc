"""Reading what a `topup` command printed, for the CLI tests (unit and browser)."""

from __future__ import annotations

from typer.testing import Result


def succeeded(result: Result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def rows(output: str) -> list[list[str]]:
    """The cells of each row of the Rich tables in `output`."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]
