"""Settings helpers shared by the cloud server and the edge agent (no torch, no web framework)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr


class TokenError(ValueError):
    """The bearer token configuration is unusable; the message names the setting or file."""


def read_token(token: SecretStr | None, token_file: Path | None) -> str | None:
    """The bearer token from `token` or from the first line of `token_file`; None when neither is set.

    Both at once is an error rather than a silent precedence rule: a stale file next to a fresh
    variable would otherwise lock clients out with no clue why. The token is never put in a message.
    """
    if token is not None and token_file is not None:
        raise TokenError("set either token or token_file, not both")
    if token is not None:
        value = token.get_secret_value().strip()
        if not value:
            raise TokenError("token is set but empty")
        return value
    if token_file is None:
        return None
    path = Path(token_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenError(f"token_file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenError(f"token_file {path} cannot be read: {type(err).__name__}") from None
    lines = text.strip().splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise TokenError(f"token_file {path} is empty")
    return value
