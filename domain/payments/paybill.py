"""Paybill (C2B) value rules: the customer's deposit reference and masked MSISDNs. Pure.

The deposit reference is what a customer types as the account number (BillRefNumber) when paying
PenPay's paybill: `PP` and eight characters of an alphabet without 0/O and 1/I (read aloud, typed on
a phone keypad), the last a check character over the others (any one mistyped character or two
neighbours swapped is caught), so a mistyped reference is refused at validation instead of landing on
another user's account.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PREFIX = "PP"
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_BODY = 7
_SHAPE = re.compile(rf"^{PREFIX}[{ALPHABET}]{{{_BODY + 1}}}$")
_MASK = re.compile(r"[*xX#]")


def _times_x(value: int) -> int:
    """value * x in GF(32) = GF(2)[x] / (x^5 + x^2 + 1)."""
    value <<= 1
    return value ^ 0b100101 if value & 0b100000 else value


def _check(body: str) -> str:
    # Damm's construction over GF(32), a*i + c with a = x: every single substitution and every swap
    # of two neighbours (the check character included) changes the sum, so the check fails.
    total = 0
    for c in body:
        total = _times_x(total) ^ ALPHABET.index(c)
    return ALPHABET[_times_x(total)]


def new_reference(randbelow: Callable[[int], int]) -> str:
    body = "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(_BODY))
    return f"{PREFIX}{body}{_check(body)}"


def normalise_reference(text: str) -> str | None:
    """The reference a customer typed (any case, spaces or dashes), or None when it is not one."""
    candidate = re.sub(r"[\s\-]", "", text).upper()
    if not _SHAPE.match(candidate):
        return None
    body = candidate[len(PREFIX) : -1]
    return candidate if _check(body) == candidate[-1] else None


def _international(digits: str) -> str:
    """A Kenyan number's visible head in the 254 form (07.. and 7.. become 2547..)."""
    if digits.startswith("0"):
        return "254" + digits[1:]
    if digits.startswith(("7", "1")) and len(digits) <= 9:
        return "254" + digits
    return digits


def _visible(shown: str) -> tuple[str, str, bool]:
    """(head digits, tail digits, masked?) of an MSISDN as shown: `0722***000`, `2547 ***** 126`."""
    text = re.sub(r"[\s+\-]", "", shown)
    if not _MASK.search(text):
        whole = _international(text)
        return whole, whole, False
    marks = list(_MASK.finditer(text))
    return _international(text[: marks[0].start()]), text[marks[-1].end() :], True


def visible_digits_agree(a: str | None, b: str | None) -> bool:
    """Two MSISDNs as shown (masked or whole) can be the same number: their visible heads and tails
    agree where both show digits. Nothing shown on either side agrees with anything."""
    if not a or not b:
        return True
    head_a, tail_a, _ = _visible(a)
    head_b, tail_b, _ = _visible(b)
    heads = head_a.startswith(head_b) or head_b.startswith(head_a)
    tails = tail_a.endswith(tail_b) or tail_b.endswith(tail_a)
    return heads and tails


def masked(shown: str | None) -> str | None:
    """What PenPay keeps of an MSISDN: its masked form (a whole number is masked here the same way)."""
    if not shown:
        return None
    head, _, was_masked = _visible(shown)
    if was_masked:
        return re.sub(r"\s", "", shown)[:24]
    return f"0{head[3:6]}***{head[-3:]}" if len(head) == 12 else "***"
