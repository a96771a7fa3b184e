"""Keep credentials out of what a job prints, summarises and writes.

A URI can carry them (`https://user:password@host/...`, a signed URL's `X-Amz-Signature=...`), and so can
the environment (HF_TOKEN, AWS_SECRET_ACCESS_KEY). The job still uses them to read; they are masked in
`source_uri`, in summaries (which echo the job's flags) and in error messages and tracebacks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

REDACTED = "REDACTED"
# user:password@ (or a lone token@) right after a scheme, before the first "/".
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")
# Query parameters that authorise a request: signed URLs (S3, GCS, Azure SAS), OAuth and API keys.
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:[^=&#\s'\"]*(?:signature|credential|token|secret|password|passwd|api[_-]?key|access[_-]?key)"
    r"[^=&#\s'\"]*|sig|key|code)=)[^&#\s'\"]*",
    re.IGNORECASE,
)
# Environment variables whose values are credentials, by name (HF_TOKEN, AWS_SECRET_ACCESS_KEY, RAY_AUTH_TOKEN,
# AWS_SESSION_TOKEN, ...). Short values ("anon", "1") are settings, not secrets, and would mask too much.
_SECRET_VARIABLE = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY", re.IGNORECASE)
_MIN_SECRET_CHARS = 8


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The credentials in an environment, longest first (so one never leaves part of another)."""
    values = {value for name, value in environ.items()
              if _SECRET_VARIABLE.search(name) and len(value) >= _MIN_SECRET_CHARS}
    return sorted(values, key=len, reverse=True)


def redact_uri(text: str) -> str:
    """`text` with the credentials of any URI in it (user info, authorising query parameters) replaced by
    REDACTED; the rest is kept as it was, so an id derived from it stays stable while a signature rotates."""
    text = _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _SECRET_PARAMETER.sub(rf"\g<name>{REDACTED}", text)


def redact_text(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`redact_uri`, and the environment's secret values (`secret_values`) replaced by REDACTED too."""
    text = redact_uri(text)
    for value in secret_values(os.environ if environ is None else environ):
        text = text.replace(value, REDACTED)
    return text


def redact(value, environ: Mapping[str, str] | None = None):
    """Every string inside `value` (dicts, lists and tuples followed) through `redact_text`."""
    if isinstance(value, str):
        return redact_text(value, environ)
    if isinstance(value, Mapping):
        return {key: redact(item, environ) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item, environ) for item in value)
    return value
