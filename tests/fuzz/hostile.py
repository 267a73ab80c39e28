"""Hypothesis strategies for hostile input shared by the fuzz targets: text, JSON, raw bytes.

Text includes what `st.text()` leaves out by default: lone surrogates (valid as JSON escapes, not as
UTF-8), control characters, bidi overrides, unassigned code points. JSON includes numbers no Python float
holds (`1e999999` parses as a Decimal) and nesting deep enough to exhaust a recursive parser.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

NASTY_STRINGS = (
    "",
    " ",
    "\x00",
    "\ud800",
    "\udfff",
    "\u202e",
    "\ufeff",
    "\r\n",
    "🙂" * 20,
    "'; DROP TABLE mpesa_requests; --",
    "%s%s%s%n",
    "${jndi:ldap://127.0.0.1/x}",
    "null",
    "0",
    "-1",
    "NaN",
    "٣٣",
    "\uff33\uff26\uff23\uff3f\uff29\uff23",  # full-width SFC_IC
    "A" * 65,
    "x" * 5000,
)

any_char = st.characters(exclude_categories=())
any_text = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(alphabet=any_char, max_size=40),
    st.text(max_size=300),
)


class Raw:
    """A JSON literal written as is (json.dumps cannot write NaN where wanted, or 1e999999)."""

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return f"Raw({self.literal!r})"


# Valid JSON numbers far outside any float (Python's parser refuses only integers over 4300 digits).
HUGE_NUMBERS = ("1e999999", "-1e999999", "1e-999999", "1" + "0" * 400 + ".5", "-0.0", "1E+30")
NOT_JSON_NUMBERS = ("NaN", "Infinity", "-Infinity")

json_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(HUGE_NUMBERS).map(Raw),
)
json_scalars = st.one_of(st.none(), st.booleans(), json_numbers, any_text)
any_json = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON bytes; `Raw` values are spliced in as their literal. Lone surrogates stay as \\u escapes."""
    literals: dict[str, str] = {}

    def encode(obj: Any) -> Any:
        if isinstance(obj, Raw):
            marker = f"@@raw{len(literals)}@@"
            literals[f'"{marker}"'] = obj.literal
            return marker
        if isinstance(obj, dict):
            return {key: encode(item) for key, item in obj.items()}
        if isinstance(obj, list):
            return [encode(item) for item in obj]
        return obj

    text = json.dumps(encode(value))
    for marker, literal in literals.items():
        text = text.replace(marker, literal, 1)
    return text.encode()


@st.composite
def broken_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    """A byte-level corruption of a JSON object that no strict parser may accept."""
    how = draw(
        st.sampled_from(
            [
                "truncate",
                "trailing",
                "bom",
                "utf16",
                "bad_utf8",
                "duplicate_key",
                "deep",
                "not_json_number",
                "int_too_long",
            ]
        )
    )
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "trailing":
        return raw + draw(st.sampled_from([b"}", b"x", b"{}", b"\x00", b",", b"]"]))
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "utf16":
        return raw.decode().encode("utf-16")
    if how == "bad_utf8":
        at = draw(st.integers(0, len(raw)))
        return (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
            + raw[at:]
        )
    if how == "duplicate_key":
        # Repeat the first key of some object: `{"k": ...` -> `{"k": null, "k": ...`
        starts = [i for i in range(len(raw) - 1) if raw[i : i + 2] == b'{"']
        at = draw(st.sampled_from(starts))
        end = raw.index(b'"', at + 2)
        return raw[: at + 1] + raw[at + 1 : end + 1] + b": null, " + raw[at + 1 :]
    if how == "deep":
        depth = draw(st.integers(2_000, 20_000))
        at = raw.rindex(b"}")
        return raw[:at] + b', "Deep": ' + b"[" * depth + b"]" * depth + raw[at:]
    if how == "int_too_long":
        at = raw.rindex(b"}")
        return raw[:at] + b', "Number": ' + b"9" * draw(st.integers(4301, 20_000)) + raw[at:]
    literal = draw(st.sampled_from(NOT_JSON_NUMBERS)).encode()
    at = raw.rindex(b"}")
    return raw[:at] + b', "Number": ' + literal + raw[at:]
