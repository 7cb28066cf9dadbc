"""`make run`'s operator token: generated once, readable by its owner only, named after
the user; tokens given in OPERATOR_TOKENS win and none of them is printed."""

import stat
from pathlib import Path

from deploy.local.stack import operator_token, operator_tokens
from shared.access import OperatorTokens


def test_the_token_is_generated_once_and_only_its_owner_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "var" / "operator-token"
    first = operator_token(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert operator_token(path) == first


def test_without_operator_tokens_the_user_gets_the_generated_one(tmp_path: Path) -> None:
    tokens, shown = operator_tokens({"USER": "alice"}, tmp_path / "token")
    assert shown is not None
    assert OperatorTokens.parse(tokens).operator_of(shown) == "alice"
    anonymous, token = operator_tokens({}, tmp_path / "token")
    assert (anonymous, token) == (f"operator={shown}", shown)


def test_operator_tokens_given_are_used_as_they_are_and_not_printed(tmp_path: Path) -> None:
    assert operator_tokens({"OPERATOR_TOKENS": "bob=b", "USER": "alice"}, tmp_path / "t") == (
        "bob=b",
        None,
    )
    assert not (tmp_path / "t").exists()
