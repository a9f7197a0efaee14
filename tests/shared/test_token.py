"""read_token: one source of the bearer token, errors that name the setting but never the secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.settings import TokenError, read_token


def test_token_comes_from_the_value_or_the_first_line_of_the_file(tmp_path: Path) -> None:
    assert read_token(None, None) is None
    assert read_token(SecretStr(" s3cret \n"), None) == "s3cret"
    path = tmp_path / "token"
    path.write_text("\n  from-file  \nsecond line\n")
    assert read_token(None, path) == "from-file"


def test_bad_token_settings_name_the_problem_not_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("hunter2")
    with pytest.raises(TokenError, match="not both") as info:
        read_token(SecretStr("hunter2"), path)
    assert "hunter2" not in str(info.value)
    with pytest.raises(TokenError, match="does not exist"):
        read_token(None, tmp_path / "missing")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(TokenError, match="empty"):
        read_token(None, tmp_path / "empty")
    with pytest.raises(TokenError, match="empty"):
        read_token(SecretStr("   "), None)
