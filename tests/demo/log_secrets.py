"""Search processes' logs for what must never be in them: tokens, secrets, passwords, codes,
unmasked phone numbers. A finding names the process, the line and the kind, never the secret."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.")
CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{8,}")


@dataclass(frozen=True)
class Leak:
    process: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.process}.log line {self.line}: {self.kind}"


def _without_timestamp(line: str) -> str:
    """A JSON line without its timestamp (its microseconds would look like a 6-digit code)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if isinstance(record, dict):
        record.pop("timestamp", None)
        return json.dumps(record)
    return line


def find_leaks(
    logs: Mapping[str, str],
    *,
    secrets: Mapping[str, Iterable[str]],
    codes: Iterable[str] = (),
    phones: Iterable[str] = (),
) -> list[Leak]:
    """`secrets`: kind -> values found anywhere in a line; `codes`: short numeric codes, found as a
    whole token outside the timestamp; `phones`: numbers in any of their written forms."""
    literal = [(kind, value) for kind, values in secrets.items() for value in values if value]
    code_patterns = [re.compile(rf"(?<![0-9A-Za-z]){re.escape(c)}(?![0-9A-Za-z])") for c in codes if c]
    phone_forms = set()
    for phone in phones:
        digits = phone.lstrip("+")
        phone_forms.update({digits, "0" + digits[3:]})  # 2547XXXXXXXX and 07XXXXXXXX
    found: list[Leak] = []
    for process, text in logs.items():
        for number, line in enumerate(text.splitlines(), start=1):
            kinds = {kind for kind, value in literal if value in line}
            if JWT.search(line):
                kinds.add("a JWT")
            if CREDENTIAL.search(line):
                kinds.add("a Bearer/Basic credential")
            if any(form in line for form in phone_forms):
                kinds.add("an unmasked phone number")
            if code_patterns:
                bare = _without_timestamp(line)
                if any(p.search(bare) for p in code_patterns):
                    kinds.add("a verification code")
            found.extend(Leak(process, number, kind) for kind in sorted(kinds))
    return found
