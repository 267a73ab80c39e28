"""Personal data masked for display: phone numbers (the visible digits Safaricom itself shows,
`0722***000`) and customers' names in provider answers. Pure."""

from __future__ import annotations

import json
import re
from typing import Any

# Keys of Daraja answers that carry a customer's number or name.
_PII_KEYS = re.compile(
    r"(phone|msisdn|partyb|partya|firstname|middlename|lastname|receiverpartypublicname|name)$", re.I
)
# A Kenyan mobile number (2547..., 2541..., 07..., 01...) standing alone, not digits inside an id.
_DIGITS = re.compile(r"(?<![\w-])(?:\+?254|0)[17]\d{8}(?![\w-])")


def mask_phone(text: str) -> str:
    """Every phone number kept to its first 4 and last 3 digits."""

    def one(match: re.Match[str]) -> str:
        value = match.group(0)
        return value[:4] + "*" * (len(value) - 7) + value[-3:]

    return _DIGITS.sub(one, text)


# Daraja's lists of pairs: STK CallbackMetadata {"Name": "PhoneNumber", "Value": ...}, B2C
# ResultParameters {"Key": "ReceiverPartyPublicName", "Value": ...}: the label names the value.
_LABELS = ("Name", "Key")


def mask_value(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        label = next((value[k] for k in _LABELS if isinstance(value.get(k), str)), None)
        if label is not None and "Value" in value:
            return {
                k: v if k in _LABELS else mask_value(label if k == "Value" else k, v)
                for k, v in value.items()
            }
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v) for v in value]
    if isinstance(value, str):
        if _PII_KEYS.search(key.replace("_", "")) and not value.isdigit():
            # A name, or "2547... - Jane Doe": the digits masked, the rest hidden.
            digits = _DIGITS.search(value)
            return mask_phone(digits.group(0)) + " - ***" if digits else "***"
        return mask_phone(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return mask_phone(str(value)) if _DIGITS.fullmatch(str(value)) else value
    return value


def mask_text(text: str) -> str:
    """A JSON document masked field by field, or any other text with its phone numbers masked."""
    try:
        document = json.loads(text)
    except ValueError:
        return mask_phone(text)
    return json.dumps(mask_value("", document), indent=1, sort_keys=True)


def mask_fields(fields: dict[str, str]) -> dict[str, str]:
    return {k: str(mask_value(k, v)) for k, v in fields.items()}
