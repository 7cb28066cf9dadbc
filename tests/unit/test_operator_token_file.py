"""`make run`'s tokens: generated once, readable by their owner only; the operator's named
after the user, the command line's with the scopes it needs; tokens given in
OPERATOR_TOKENS or API_TOKENS win and none of them is printed."""

import stat
from pathlib import Path

from deploy.local.stack import api_tokens, generated_token, operator_tokens
from shared.access import Callers, Scope


def test_a_token_is_generated_once_and_only_its_owner_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "var" / "operator-token"
    first = generated_token(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generated_token(path) == first


def test_without_operator_tokens_the_user_gets_the_generated_one(tmp_path: Path) -> None:
    tokens, shown = operator_tokens({"USER": "alice"}, tmp_path / "token")
    assert shown is not None
    alice = Callers.parse("", tokens).find(shown)
    assert alice is not None
    assert alice.name == "alice"
    anonymous, token = operator_tokens({}, tmp_path / "token")
    assert (anonymous, token) == (f"operator={shown}", shown)


def test_operator_tokens_given_are_used_as_they_are_and_not_printed(tmp_path: Path) -> None:
    assert operator_tokens({"OPERATOR_TOKENS": "bob=b", "USER": "alice"}, tmp_path / "t") == (
        "bob=b",
        None,
    )
    assert not (tmp_path / "t").exists()


def test_the_command_line_gets_a_caller_that_reads_and_manages_auto_renewal(
    tmp_path: Path,
) -> None:
    tokens = api_tokens({}, tmp_path / "api-token")
    cli = Callers.parse(tokens).find((tmp_path / "api-token").read_text().strip())
    assert cli is not None
    assert cli.name == "topup-cli"
    assert cli.scopes == {Scope.READ, Scope.AUTO_RENEWAL}
    assert api_tokens({"API_TOKENS": "shop:read=s"}, tmp_path / "other") == "shop:read=s"
    assert not (tmp_path / "other").exists()
