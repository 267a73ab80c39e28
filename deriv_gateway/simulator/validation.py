"""Request validation for the calls the simulator serves, written by hand from Deriv's send.json schemas.

The simulator does not ship or read the schemas (it must run from a clean install); the test suite checks
that this module accepts and rejects the same requests as the official schemas do.

Deriv validates with JSON::Validator and reports (binary-websocket-api `_validate_schema_error`):
field errors as `details: {"<path>": "<message>"}` with the message "Input validation failed: <paths>",
and top-level errors (such as extra properties) in the message only:
"Input validation failed: Properties not allowed: foo."
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class F:
    """One field's constraints (a small subset of draft-04 JSON Schema)."""

    type: tuple[str, ...]
    enum: tuple[Any, ...] | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    max_items: int | None = None
    items: F | None = None
    # for objects with additionalProperties: false
    properties: Mapping[str, F] | None = None
    # anyOf alternatives (forget_all: a stream type or a list of them)
    any_of: tuple[F, ...] = ()


def f(type_: str | tuple[str, ...] = (), **kw: Any) -> F:
    types = (type_,) if isinstance(type_, str) else tuple(type_)
    return F(type=types, **kw)


@dataclass(frozen=True)
class CallSpec:
    name: str
    fields: Mapping[str, F]
    required: tuple[str, ...]
    auth_required: bool
    scopes: tuple[str, ...] = ()
    sensitive: frozenset[str] = field(default_factory=frozenset)


LOGINID = f("string", pattern=r"^[A-Za-z]+[0-9]+$")
CURRENCY = f("string", pattern=r"^[a-zA-Z0-9]{2,20}$")
ONE = f("integer", enum=(1,))
ZERO_ONE = f("integer", enum=(0, 1))
NOTE = f("string", pattern=r"^[0-9A-Za-z .,'-]{0,250}$")
COMMON = {"passthrough": f("object"), "req_id": f("integer")}

STREAM_TYPES = (
    "balance",
    "candles",
    "cashier_payments",
    "p2p_advert",
    "p2p_advertiser",
    "p2p_order",
    "proposal",
    "proposal_open_contract",
    "ticks",
    "transaction",
    "trading_platform_asset_listing",
    "website_status",
    "p2p_settings",
    "crypto_estimations",
)
STREAM_TYPE = f("string", enum=STREAM_TYPES)

VERIFY_EMAIL_TYPES = (
    "account_opening",
    "account_verification",
    "reset_password",
    "paymentagent_withdraw",
    "payment_withdraw",
    "trading_platform_dxtrade_password_reset",
    "trading_platform_mt5_password_reset",
    "trading_platform_investor_password_reset",
    "request_email",
    "phone_number_verification",
)

_COOKIE = r"^[A-Za-z0-9._-]{1,300}$"
AD_PLATFORM_COOKIES = f(
    "object",
    properties={
        "_ga": f("string", pattern=r"^[A-Za-z0-9._-]{1,200}$"),
        "_ga_measurement_id": f("string", pattern=r"^_ga_[A-Z0-9]{5,20}$"),
        "_ga_measurement_value": f("string", pattern=r"^[A-Za-z0-9._$-]{1,200}$"),
        **{
            name: f("string", pattern=_COOKIE)
            for name in ("fbc", "fbp", "gbraid", "gclid", "msclkid", "scclid", "ttclid", "wbraid")
        },
    },
)
_UTM = f("string")  # the schema's anyOf [patterned string, string] accepts any string
URL_PARAMETERS = f(
    "object",
    properties={
        "affiliate_token": f("string", pattern=r"^[\w-]{0,100}$"),
        "affiliate_token_type": f("string", enum=("client", "partner")),
        "date_first_contact": f("string", pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
        "gclid_url": f("string", pattern=r"^[a-zA-Z0-9\s\-\.\_]{0,100}$"),
        "pa_amount": f("number"),
        "pa_currency": CURRENCY,
        "pa_loginid": LOGINID,
        "pa_remarks": f("string", pattern=r"^[0-9A-Za-z .,'-]{0,100}$"),
        "redirect_to": f("integer"),
        "residence": f("string", pattern=r"^[a-z]{2}$"),
        "signup_device": f("string", enum=("desktop", "mobile")),
        **{
            f"utm_{name}": _UTM
            for name in (
                "ad_id",
                "adgroup_id",
                "adrollclk_id",
                "campaign",
                "campaign_id",
                "content",
                "fbcl_id",
                "gl_client_id",
                "medium",
                "msclk_id",
                "sccid",
                "source",
                "term",
                "ttclid",
            )
        },
    },
)


def _spec(
    name: str,
    fields: dict[str, F],
    required: tuple[str, ...] = (),
    auth: bool = False,
    scopes: tuple[str, ...] = (),
    sensitive: tuple[str, ...] = (),
) -> CallSpec:
    return CallSpec(
        name=name,
        fields={**fields, **COMMON},
        required=(name, *required),
        auth_required=auth,
        scopes=scopes,
        sensitive=frozenset(sensitive),
    )


READ = ("read",)
READ_TI = ("read", "trading_information")
PAYMENTS = ("payments",)

SPECS: dict[str, CallSpec] = {
    s.name: s
    for s in (
        _spec(
            "authorize",
            {
                "authorize": f("string", pattern=r"^[\w\-]{1,128}$"),
                "add_to_login_history": f("integer", enum=(1, 0)),
                "tokens": f("array", items=f("string", pattern=r"^[\w\-]{1,128}$"), max_items=25),
            },
            sensitive=("authorize", "tokens"),
        ),
        _spec("logout", {"logout": ONE, "loginid": LOGINID}),
        _spec("ping", {"ping": ONE}),
        _spec("time", {"time": ONE}),
        _spec("forget", {"forget": f("string", pattern=r"^[\w-]{32,128}$")}),
        _spec("forget_all", {"forget_all": f(any_of=(STREAM_TYPE, f("array", items=STREAM_TYPE)))}),
        _spec("website_status", {"website_status": ONE, "subscribe": ZERO_ONE}),
        _spec(
            "balance",
            {
                "balance": ONE,
                "account": f("string", pattern=r"^(current|all|[A-Z]{2,4}[0-9]{1,10})$"),
                "subscribe": ZERO_ONE,
                "loginid": LOGINID,
            },
            auth=True,
            scopes=READ_TI,
        ),
        _spec("get_settings", {"get_settings": ONE, "loginid": LOGINID}, auth=True, scopes=READ),
        _spec("account_list", {"account_list": ONE}, auth=True, scopes=READ),
        _spec(
            "statement",
            {
                "statement": ONE,
                "action_type": f(
                    "string",
                    enum=(
                        "buy",
                        "sell",
                        "deposit",
                        "withdrawal",
                        "escrow",
                        "adjustment",
                        "virtual_credit",
                        "transfer",
                    ),
                ),
                "date_from": f("integer", minimum=0, maximum=9999999999),
                "date_to": f("integer", minimum=0, maximum=9999999999),
                "description": ZERO_ONE,
                "limit": f("number", minimum=0, maximum=999),
                "offset": f("integer", minimum=0),
                "loginid": LOGINID,
            },
            auth=True,
            scopes=READ_TI,
        ),
        _spec(
            "transaction",
            {"transaction": ONE, "subscribe": ONE, "loginid": LOGINID},
            required=("subscribe",),
            auth=True,
            scopes=READ_TI,
        ),
        _spec(
            "verify_email",
            {
                "verify_email": f("string", pattern=r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,63}$"),
                "type": f("string", enum=VERIFY_EMAIL_TYPES),
                "ad_platform_cookies": AD_PLATFORM_COOKIES,
                "url_parameters": URL_PARAMETERS,
                "loginid": LOGINID,
            },
            required=("type",),
        ),
        _spec(
            "paymentagent_transfer",
            {
                "paymentagent_transfer": ONE,
                "amount": f("number"),
                "currency": CURRENCY,
                "description": NOTE,
                "dry_run": ZERO_ONE,
                "transfer_to": LOGINID,
                "loginid": LOGINID,
            },
            required=("amount", "currency", "transfer_to"),
            auth=True,
            scopes=PAYMENTS,
        ),
        _spec(
            "paymentagent_withdraw",
            {
                "paymentagent_withdraw": ONE,
                "amount": f("number"),
                "currency": CURRENCY,
                "description": NOTE,
                "dry_run": ZERO_ONE,
                "paymentagent_loginid": LOGINID,
                "verification_code": f("string", pattern=r"^\w{8,128}$"),
                "loginid": LOGINID,
            },
            required=("amount", "currency", "paymentagent_loginid", "verification_code"),
            auth=True,
            scopes=PAYMENTS,
        ),
        _spec(
            "paymentagent_withdraw_justification",
            {
                "paymentagent_withdraw_justification": ONE,
                "message": f("string", min_length=1, max_length=500),
                "loginid": LOGINID,
            },
            auth=True,
            scopes=PAYMENTS,
        ),
        _spec(
            "paymentagent_list",
            {"paymentagent_list": f("string", pattern=r"^\w\w$"), "currency": CURRENCY, "loginid": LOGINID},
        ),
        _spec(
            "paymentagent_details",
            {"paymentagent_details": ONE, "loginid": LOGINID},
            auth=True,
            scopes=("admin",),
        ),
    )
}


# ---- the validator ------------------------------------------------------------------------------------


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_ok(value: Any, types: tuple[str, ...]) -> bool:
    actual = json_type(value)
    return actual in types or (actual == "integer" and "number" in types)


def _fmt(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return str(value)


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _match(pattern: str, value: str) -> bool:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled.search(value) is not None


def check_field(spec: F, value: Any, path: str, errors: list[tuple[str, str]]) -> None:
    """Append (path, message) pairs; messages follow JSON::Validator's wording."""
    if spec.any_of:
        trials: list[list[tuple[str, str]]] = []
        for alt in spec.any_of:
            errs: list[tuple[str, str]] = []
            check_field(alt, value, path, errs)
            if not errs:
                return
            trials.append(errs)
        # report the alternative whose type fits, else the first
        fitting = [t for alt, t in zip(spec.any_of, trials, strict=True) if _type_ok(value, alt.type)]
        errors.extend((fitting or trials)[0])
        return
    if spec.type and not _type_ok(value, spec.type):
        errors.append((path, f"Expected {'/'.join(spec.type)} - got {json_type(value)}."))
        return
    if spec.enum is not None and not any(value == e and json_type(value) != "boolean" for e in spec.enum):
        errors.append((path, f"Not in enum list: {', '.join(_fmt(e) for e in spec.enum)}."))
        return
    if isinstance(value, str):
        if spec.pattern is not None and not _match(spec.pattern, value):
            errors.append((path, f"String does not match {spec.pattern}."))
        if spec.min_length is not None and len(value) < spec.min_length:
            errors.append((path, f"String is too short: {len(value)}/{spec.min_length}."))
        if spec.max_length is not None and len(value) > spec.max_length:
            errors.append((path, f"String is too long: {len(value)}/{spec.max_length}."))
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            errors.append((path, f"{_fmt(value)} < minimum({_fmt(spec.minimum)})"))
        if spec.maximum is not None and value > spec.maximum:
            errors.append((path, f"{_fmt(value)} > maximum({_fmt(spec.maximum)})"))
    elif isinstance(value, list):
        if spec.max_items is not None and len(value) > spec.max_items:
            errors.append((path, f"Too many items: {len(value)}/{spec.max_items}."))
        if spec.items is not None:
            for i, item in enumerate(value):
                check_field(spec.items, item, f"{path}/{i}", errors)
    elif isinstance(value, dict) and spec.properties is not None:
        extra = sorted(k for k in value if k not in spec.properties)
        if extra:
            errors.append((path, f"Properties not allowed: {', '.join(extra)}."))
        for key, sub in spec.properties.items():
            if key in value:
                check_field(sub, value[key], f"{path}/{key}", errors)


def validate(spec: CallSpec, request: dict[str, Any]) -> list[tuple[str, str]]:
    """All schema violations as (path, message); path "" is the top level."""
    errors: list[tuple[str, str]] = []
    extra = sorted(k for k in request if k not in spec.fields)
    if extra:
        errors.append(("", f"Properties not allowed: {', '.join(extra)}."))
    for key in spec.required:
        if key not in request:
            errors.append((key, "Missing property."))
    for key, sub in spec.fields.items():
        if key in request:
            check_field(sub, request[key], key, errors)
    return errors


def validation_error(errors: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """(message, details) as Deriv builds them for InputValidationFailed."""
    details: dict[str, str] = {}
    general: list[str] = []
    for path, message in errors:
        if path:
            details.setdefault(path, message)
        else:
            general.append(message)
    message = "Input validation failed: " + ", ".join([*sorted(details), *general])
    return message, details


# ---- sanity filter (runs before schema validation) -------------------------------------------------------

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
MAX_SCALAR = 300


def sane(value: Any, key: str = "") -> bool:
    """Deriv's pre-dispatch sanity check: plain keys, printable scalars of at most 300 characters."""
    if isinstance(value, dict):
        return all(_KEY_RE.match(k) and sane(v, k) for k, v in value.items())
    if isinstance(value, list):
        return all(sane(v, key) for v in value)
    if "password" in key:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_SCALAR and all(ch.isprintable() or ch in "\t\n\r" for ch in value)
    return len(_fmt(value)) <= MAX_SCALAR
