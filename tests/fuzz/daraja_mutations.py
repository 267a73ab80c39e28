"""Structure-aware mutations of valid Daraja callback bodies, each labelled with what it must cause.

A mutation changes one field of a genuine body (the simulator's own) and says what the callback is then:
  BLOCKING      malformed, or naming / claiming something else: it may settle nothing at all
  FAILURE       a well-formed failure ResultCode (non-zero, numeric or not, however large)
  FINAL_STATUS  Transaction Status says the payout is over without paying (Cancelled, Failed, ...)
  EVIDENCE      a success whose evidence disagrees with the stored request (amount, receipt, phone)
  NEUTRAL       a harmless variation Daraja is known to send (types, order, masking, spacing, extra keys)
The fuzz tests turn the set of effects into the one state the stored row may end in (`expected_status`),
so both directions are checked: defective callbacks change nothing, harmless variations are still
accepted. Text that is not Unicode (a lone surrogate escape, refused by I-JSON, RFC 7493) is malformed
wherever it appears.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from hypothesis import strategies as st

from domain.payments.paybill import visible_digits_agree
from tests.fuzz.hostile import Raw, any_json, any_text, broken_bytes, dumps


class Effect(Enum):
    BLOCKING = "blocking"
    FAILURE = "failure"
    FINAL_STATUS = "final_status"
    EVIDENCE = "evidence"
    NEUTRAL = "neutral"


B, F, FS, E, N = Effect.BLOCKING, Effect.FAILURE, Effect.FINAL_STATUS, Effect.EVIDENCE, Effect.NEUTRAL


class Kind(Enum):
    STK = "stk"
    B2C_RESULT = "b2c_result"
    B2C_TIMEOUT = "b2c_timeout"
    STATUS_RESULT = "status_result"


def expected_status(kind: Kind, effects: set[Effect]) -> str:
    """The only status a SENT request / disbursement may have after the callback."""
    if B in effects:
        return "SENT"
    if kind is Kind.B2C_TIMEOUT:
        return "UNKNOWN"
    if kind is Kind.STATUS_RESULT:
        if F in effects:
            return "SENT"  # a status query that failed settles nothing
        if FS in effects:
            return "FAILED"
        return "SENT" if E in effects else "CONFIRMED"
    if F in effects:
        return "FAILED"
    return "SENT" if E in effects else "SUCCEEDED"


@dataclass(frozen=True)
class Mutation:
    effect: Effect
    label: str
    apply: Callable[[dict[str, Any]], bool]  # False: the field is gone (an earlier mutation), nothing done


@dataclass(frozen=True)
class Case:
    raw: bytes
    effects: frozenset[Effect]
    labels: tuple[str, ...]


# --- where fields live --------------------------------------------------------------------

Getter = Callable[[dict[str, Any]], dict[str, Any] | None]


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _at(*path: str) -> Getter:
    def get(body: dict[str, Any]) -> dict[str, Any] | None:
        node: Any = body
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return _dict(node)

    return get


def _items(container: Getter, list_key: str) -> Callable[[dict[str, Any]], list[Any] | None]:
    def get(body: dict[str, Any]) -> list[Any] | None:
        node = container(body)
        items = node.get(list_key) if node is not None else None
        return items if isinstance(items, list) else None

    return get


def _set(get: Getter, key: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        node = get(body)
        if node is None:
            return False
        node[key] = value
        return True

    return apply


def _drop(get: Getter, key: str) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        node = get(body)
        if node is None or key not in node:
            return False
        del node[key]
        return True

    return apply


def _pad(get: Getter, key: str, padding: str) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        node = get(body)
        if node is None or not isinstance(node.get(key), str):
            return False
        node[key] = padding + node[key] + padding
        return True

    return apply


ItemsGetter = Callable[[dict[str, Any]], list[Any] | None]


def _find(items: list[Any], name_key: str, name: str) -> dict[str, Any] | None:
    return next((i for i in items if isinstance(i, dict) and i.get(name_key) == name), None)


def _set_item(items: ItemsGetter, name_key: str, name: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        found = _find(items(body) or [], name_key, name)
        if found is None:
            return False
        found["Value"] = value
        return True

    return apply


def _map_item(
    items: ItemsGetter, name_key: str, name: str, change: Callable[[Any], Any]
) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        found = _find(items(body) or [], name_key, name)
        if found is None or "Value" not in found:
            return False
        found["Value"] = change(found["Value"])
        return True

    return apply


def _drop_item(items: ItemsGetter, name_key: str, name: str) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        listed = items(body)
        found = _find(listed or [], name_key, name)
        if listed is None or found is None:
            return False
        listed.remove(found)
        return True

    return apply


def _insert_item(items: ItemsGetter, item: Any, first: bool) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        listed = items(body)
        if listed is None:
            return False
        listed.insert(0 if first else len(listed), item)
        return True

    return apply


def _permute(items: ItemsGetter, order: list[int]) -> Callable[[dict[str, Any]], bool]:
    def apply(body: dict[str, Any]) -> bool:
        listed = items(body)
        if listed is None or len(listed) != len(order):
            return False
        listed[:] = [listed[i] for i in order]
        return True

    return apply


# --- value families ---------------------------------------------------------------------------

WHITESPACE = st.text(alphabet=" \t\r\n\x0b\x0c\u00a0\u2003\u3000", min_size=1, max_size=3)
non_scalars = st.one_of(st.lists(any_json, max_size=3), st.dictionaries(any_text, any_json, max_size=3))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), any_text)
bad_ids = st.one_of(
    any_text, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), non_scalars
)
RECEIPT = re.compile(r"[A-Z0-9]{10}")


def _same_number(value: Any, amount: int) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        return Decimal(str(value).strip()) == amount
    except InvalidOperation:
        return False


def amount_mutations(amount: int) -> st.SearchStrategy[tuple[Effect, str, Any]]:
    """(effect, label, new Value) for an amount field whose genuine value is `amount` shillings."""
    same = st.sampled_from(
        [
            amount,
            float(amount),
            str(amount),
            f"{amount}.00",
            f" {amount} ",
            Raw(f"{amount}E0"),
            Raw(f"{amount * 100}e-2"),
        ]
    ).map(lambda v: (N, "amount: same value, other form", v))
    other = st.one_of(
        st.integers().filter(lambda v: v != amount),
        st.sampled_from([0, -amount, amount * 100, amount + 1, -1]),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != amount),
        st.text(alphabet=st.characters(exclude_categories=["Nd"]), max_size=20),
        st.integers().filter(lambda v: v != amount).map(str),
        st.sampled_from(["1e999999", "-1e999999", "1e-999999", "1E+30", "1" + "0" * 400 + ".5"]).map(Raw),
        # more digits than Decimal's 28-digit default precision keeps: must not round to the amount
        st.integers(1, 9).map(lambda d: Raw(f"{amount}.{'0' * 29}{d}")),
        st.none(),
        st.booleans(),
    ).map(lambda v: (E, "amount: another value", v))
    refused = st.one_of(non_scalars, st.just(Raw("9" * 5000))).map(lambda v: (B, "amount: not a scalar", v))
    return st.one_of(same, other, refused)


def receipt_mutations() -> st.SearchStrategy[tuple[Effect, str, Any]]:
    invalid = st.one_of(
        any_text.filter(lambda s: not RECEIPT.fullmatch(s.strip())),
        st.integers().filter(lambda v: not RECEIPT.fullmatch(str(v))),
        st.none(),
        st.booleans(),
    ).map(lambda v: (E, "receipt: invalid", v))
    return st.one_of(invalid, non_scalars.map(lambda v: (B, "receipt: not a scalar", v)))


def result_code_mutations() -> st.SearchStrategy[tuple[Effect, str, Any]]:
    success = st.sampled_from([0, "0", "00", " 0 ", 0.0]).map(
        lambda v: (N, "ResultCode: 0 in another form", v)
    )
    failure = st.one_of(
        st.integers(min_value=-(10**31) + 1, max_value=10**32 - 1).filter(lambda v: v != 0),
        st.integers(min_value=-(2**40), max_value=2**40).filter(lambda v: v != 0).map(str),
        st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True),
        st.sampled_from([1032.0, 2001.0, 1e20, 2**31, -(2**31) - 1, Raw("1E+31")]),
    ).map(lambda v: (F, "ResultCode: a failure", v))
    malformed = st.one_of(
        st.none(),
        st.booleans(),
        non_scalars,
        st.sampled_from(
            ["", "   ", "1" * 33, 0.5, -1.25, 10**32, Raw("1e999999"), Raw("1E+32"), Raw("1e-5")]
        ),
    ).map(lambda v: (B, "ResultCode: not a code (or over 32 characters)", v))
    return st.one_of(success, failure, malformed)


def _with_effect(effect: Effect, label: str) -> Callable[[Any], tuple[Effect, str, Any]]:
    return lambda v: (effect, label, v)


# --- field menus ------------------------------------------------------------------------------

Menu = dict[str, st.SearchStrategy[Mutation]]


def _mutation(effect: Effect, label: str, apply: Callable[[dict[str, Any]], bool]) -> Mutation:
    return Mutation(effect, label, apply)


def _id_field(get: Getter, key: str) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        WHITESPACE.map(lambda pad: _mutation(N, f"{key}: padded", _pad(get, key, pad))),
        bad_ids.map(lambda v: _mutation(B, f"{key}: another value", _set(get, key, v))),
        st.just(_mutation(B, f"{key}: missing", _drop(get, key))),
    )


def _value_field(
    get: Getter, key: str, values: st.SearchStrategy[tuple[Effect, str, Any]]
) -> st.SearchStrategy[Mutation]:
    return values.map(lambda t: _mutation(t[0], t[1], _set(get, key, t[2])))


def _desc_field(get: Getter, key: str) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        any_text.map(lambda v: _mutation(N, f"{key}: any text", _set(get, key, v))),
        st.just(_mutation(N, f"{key}: missing", _drop(get, key))),
        st.one_of(st.none(), st.integers(), non_scalars).map(
            lambda v: _mutation(B, f"{key}: not a string", _set(get, key, v))
        ),
    )


def _optional_id_field(get: Getter, key: str) -> st.SearchStrategy[Mutation]:
    """ConversationID / TransactionID: optional short strings (or numbers)."""
    fine = st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60).filter(
            lambda s: 0 < len(s.strip()) <= 64
        ),
        st.integers(min_value=0, max_value=10**30),
        st.none(),
    ).map(lambda v: _mutation(N, f"{key}: another value", _set(get, key, v)))
    bad = st.one_of(
        st.sampled_from(["", "   ", "x" * 65]), st.booleans(), st.floats(allow_nan=False), non_scalars
    ).map(lambda v: _mutation(B, f"{key}: not an id", _set(get, key, v)))
    return st.one_of(fine, bad, st.just(_mutation(N, f"{key}: missing", _drop(get, key))))


def _item_list_field(
    items: ItemsGetter, name_key: str, known: set[str], size: int
) -> st.SearchStrategy[Mutation]:
    """Reordered, an unknown entry added, or a malformed entry added."""
    unknown_name = any_text.filter(lambda s: s not in known)
    extra = st.one_of(
        st.builds(lambda n, v: {name_key: n, "Value": v}, unknown_name, scalars),
        unknown_name.map(lambda n: {name_key: n}),
    )
    malformed = st.one_of(
        scalars,
        non_scalars.map(lambda v: {name_key: "Extra", "Value": v}),
        scalars.map(lambda v: {"Value": v}),
        st.one_of(st.integers(), st.none(), non_scalars).map(lambda n: {name_key: n, "Value": 1}),
    )
    return st.one_of(
        st.permutations(list(range(size))).map(
            lambda o: _mutation(N, "items: reordered", _permute(items, o))
        ),
        st.tuples(extra, st.booleans()).map(
            lambda t: _mutation(N, "items: unknown entry", _insert_item(items, t[0], t[1]))
        ),
        st.tuples(malformed, st.booleans()).map(
            lambda t: _mutation(B, "items: malformed entry", _insert_item(items, t[0], t[1]))
        ),
    )


def _container_field(get: Getter, key: str, list_key: str) -> st.SearchStrategy[Mutation]:
    """CallbackMetadata / ResultParameters as a whole: emptied (no evidence) or of the wrong type."""
    emptied = st.sampled_from([None, {}, {list_key: None}, {list_key: []}]).map(
        lambda v: _mutation(E, f"{key}: emptied", _set(get, key, v))
    )
    wrong = st.one_of(
        st.lists(any_json, max_size=2),
        any_text,
        st.integers(),
        st.one_of(any_text, st.integers(), st.booleans()).map(lambda v: {list_key: v}),
    ).map(lambda v: _mutation(B, f"{key}: wrong type", _set(get, key, v)))
    return st.one_of(emptied, wrong, st.just(_mutation(E, f"{key}: missing", _drop(get, key))))


def _extra_key(get: Getter, known: set[str], effect: Effect, where: str) -> st.SearchStrategy[Mutation]:
    return st.tuples(any_text.filter(lambda k: k not in known), any_json).map(
        lambda kv: _mutation(effect, f"{where}: extra key", _set(get, kv[0], kv[1]))
    )


def _replace_whole(key: str) -> st.SearchStrategy[Mutation]:
    root: Getter = lambda body: body  # noqa: E731
    return st.one_of(
        any_json.filter(lambda v: not isinstance(v, dict)), st.dictionaries(any_text, any_json, max_size=2)
    ).map(lambda v: _mutation(B, f"{key}: replaced", _set(root, key, v)))


def _amount_item(
    items: ItemsGetter, name_key: str, names: tuple[str, ...], amount: int
) -> st.SearchStrategy[Mutation]:
    name = names[0]
    return st.one_of(
        amount_mutations(amount).map(lambda t: _mutation(t[0], t[1], _set_item(items, name_key, name, t[2]))),
        st.just(_mutation(E, f"{name}: missing", _drop_item(items, name_key, name))),
        # Duplicated names: the first present value counts; a later one changes nothing.
        amount_mutations(amount)
        .filter(lambda t: t[0] is E and t[2] is not None)
        .map(
            lambda t: _mutation(
                E,
                f"{name}: another value listed first",
                _insert_item(items, {name_key: name, "Value": t[2]}, True),
            )
        ),
        scalars.map(
            lambda v: _mutation(
                N,
                f"{name}: another value listed last",
                _insert_item(items, {name_key: name, "Value": v}, False),
            )
        ),
    )


def _receipt_item(items: ItemsGetter, name_key: str, name: str) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        receipt_mutations().map(lambda t: _mutation(t[0], t[1], _set_item(items, name_key, name, t[2]))),
        WHITESPACE.map(
            lambda pad: _mutation(
                N, "receipt: padded", _map_item(items, name_key, name, lambda v: pad + v + pad)
            )
        ),
        st.just(_mutation(E, "receipt: missing", _drop_item(items, name_key, name))),
    )


def _scalar_item(items: ItemsGetter, name_key: str, name: str) -> st.SearchStrategy[Mutation]:
    """An informational entry (TransactionDate, ReceiverPartyPublicName): any scalar, never a container."""
    return st.one_of(
        scalars.map(lambda v: _mutation(N, f"{name}: any scalar", _set_item(items, name_key, name, v))),
        st.just(_mutation(N, f"{name}: missing", _drop_item(items, name_key, name))),
        non_scalars.map(lambda v: _mutation(B, f"{name}: not a scalar", _set_item(items, name_key, name, v))),
    )


MASK = re.compile(r"[*xX#]")


def _phone_effect(value: Any, msisdn: str) -> Effect:
    """Daraja masks phones in some callbacks (2547****1234): an absent phone is not checked, a masked
    one on the digits it shows (visible_digits_agree: garbage around a mask character is a mismatch)."""
    if value is None or isinstance(value, bool):
        return N
    text = str(value).strip()
    if not text:
        return N
    if MASK.search(text):
        return N if visible_digits_agree(text, msisdn) else E
    return N if "".join(c for c in text if c.isdigit()) == msisdn else E


def _phone_item(items: ItemsGetter, msisdn: str) -> st.SearchStrategy[Mutation]:
    values = st.one_of(
        st.sampled_from(
            [
                msisdn,
                int(msisdn),
                "+" + msisdn,
                f" {msisdn} ",
                msisdn[:5] + "****" + msisdn[9:],
                msisdn[:6] + "xxx" + msisdn[9:],
                "#" * 12,
            ]
        ),
        st.integers(min_value=0),
        st.from_regex(r"\+?[0-9 ]{1,16}", fullmatch=True),
        any_text,
        st.none(),
        st.booleans(),
    )
    return st.one_of(
        values.map(
            lambda v: _mutation(
                _phone_effect(v, msisdn), "PhoneNumber: changed", _set_item(items, "Name", "PhoneNumber", v)
            )
        ),
        st.just(_mutation(N, "PhoneNumber: missing", _drop_item(items, "Name", "PhoneNumber"))),
        non_scalars.map(
            lambda v: _mutation(B, "PhoneNumber: not a scalar", _set_item(items, "Name", "PhoneNumber", v))
        ),
    )


def stk_menu(amount: int, msisdn: str) -> Menu:
    cb = _at("Body", "stkCallback")
    items = _items(_at("Body", "stkCallback", "CallbackMetadata"), "Item")
    known = {"MerchantRequestID", "CheckoutRequestID", "ResultCode", "ResultDesc", "CallbackMetadata"}
    return {
        "0 Body": _replace_whole("Body"),
        "0 top": _extra_key(lambda body: body, {"Body"}, B, "top level"),
        "1 Body key": _extra_key(_at("Body"), {"stkCallback"}, B, "Body"),
        "1 stkCallback": _value_field(
            _at("Body"), "stkCallback", non_scalars.map(_with_effect(B, "stkCallback: wrong"))
        )
        | st.just(_mutation(B, "stkCallback: missing", _drop(_at("Body"), "stkCallback"))),
        "2 CallbackMetadata": _container_field(cb, "CallbackMetadata", "Item"),
        "3 MerchantRequestID": _id_field(cb, "MerchantRequestID"),
        "3 CheckoutRequestID": _id_field(cb, "CheckoutRequestID"),
        "3 ResultCode": _value_field(cb, "ResultCode", result_code_mutations())
        | st.just(_mutation(B, "ResultCode: missing", _drop(cb, "ResultCode"))),
        "3 ResultDesc": _desc_field(cb, "ResultDesc"),
        "3 extra": _extra_key(cb, known, N, "stkCallback"),
        "4 items": _item_list_field(items, "Name", {"Amount", "MpesaReceiptNumber", "PhoneNumber"}, 5),
        "5 Amount": _amount_item(items, "Name", ("Amount",), amount),
        "5 MpesaReceiptNumber": _receipt_item(items, "Name", "MpesaReceiptNumber"),
        "5 TransactionDate": _scalar_item(items, "Name", "TransactionDate"),
        "5 PhoneNumber": _phone_item(items, msisdn),
    }


RESULT_KEYS = {
    "ResultType",
    "ResultCode",
    "ResultDesc",
    "OriginatorConversationID",
    "ConversationID",
    "TransactionID",
    "ResultParameters",
    "ReferenceData",
}


def _result_type_field(get: Getter) -> st.SearchStrategy[Mutation]:
    fine = st.one_of(st.integers(), st.from_regex(r"[0-9A-Za-z_]{1,32}", fullmatch=True), st.none()).map(
        lambda v: _mutation(N, "ResultType: another value", _set(get, "ResultType", v))
    )
    bad = st.one_of(st.booleans(), non_scalars, st.sampled_from(["", "x" * 33, 0.5])).map(
        lambda v: _mutation(B, "ResultType: not a code", _set(get, "ResultType", v))
    )
    return st.one_of(fine, bad, st.just(_mutation(N, "ResultType: missing", _drop(get, "ResultType"))))


def _reference_field(get: Getter) -> st.SearchStrategy[Mutation]:
    fine = st.one_of(
        st.none(),
        st.lists(st.builds(lambda k, v: {"Key": k, "Value": v}, any_text, scalars), max_size=3).map(
            lambda items: {"ReferenceItem": items}
        ),
    ).map(lambda v: _mutation(N, "ReferenceData: other items", _set(get, "ReferenceData", v)))
    bad = st.one_of(
        st.lists(any_json, min_size=1, max_size=2),
        any_text,
        st.integers(),
        non_scalars.map(lambda v: {"ReferenceItem": {"Key": "Occasion", "Value": v}}),
        scalars.map(lambda v: {"ReferenceItem": [{"Value": v}]}),
    ).map(lambda v: _mutation(B, "ReferenceData: malformed", _set(get, "ReferenceData", v)))
    return st.one_of(fine, bad, st.just(_mutation(N, "ReferenceData: missing", _drop(get, "ReferenceData"))))


def _result_menu(ocid_key_mutates: bool) -> Menu:
    res = _at("Result")
    menu: Menu = {
        "0 Result": _replace_whole("Result"),
        "0 top": _extra_key(lambda body: body, {"Result"}, B, "top level"),
        "3 ResultType": _result_type_field(res),
        "3 ResultCode": _value_field(res, "ResultCode", result_code_mutations())
        | st.just(_mutation(B, "ResultCode: missing", _drop(res, "ResultCode"))),
        "3 ResultDesc": _desc_field(res, "ResultDesc"),
        "3 ConversationID": _optional_id_field(res, "ConversationID"),
        "3 TransactionID": _optional_id_field(res, "TransactionID"),
        "3 extra": _extra_key(res, RESULT_KEYS, N, "Result"),
    }
    if ocid_key_mutates:
        menu["3 OriginatorConversationID"] = _id_field(res, "OriginatorConversationID")
    return menu


def b2c_result_menu(amount: int) -> Menu:
    res = _at("Result")
    params = _items(_at("Result", "ResultParameters"), "ResultParameter")
    known = {"TransactionAmount", "Amount", "TransactionReceipt"}
    return _result_menu(True) | {
        "2 ResultParameters": _container_field(res, "ResultParameters", "ResultParameter"),
        "2 ReferenceData": _reference_field(res),
        "4 params": _item_list_field(params, "Key", known, 8),
        "5 TransactionAmount": _amount_item(params, "Key", ("TransactionAmount",), amount),
        "5 TransactionReceipt": _receipt_item(params, "Key", "TransactionReceipt"),
        "5 ReceiverPartyPublicName": _scalar_item(params, "Key", "ReceiverPartyPublicName"),
    }


def b2c_timeout_menu() -> Menu:
    """A queue timeout settles nothing but "outcome unknown": its code and extras do not matter."""
    res = _at("Result")
    menu = _result_menu(True)
    menu["3 ResultCode"] = _value_field(
        res,
        "ResultCode",
        result_code_mutations().map(lambda t: (N if t[0] is F else t[0], t[1], t[2])),
    ) | st.just(_mutation(B, "ResultCode: missing", _drop(res, "ResultCode")))
    menu["2 ReferenceData"] = _reference_field(res)
    return menu


FINAL = ("cancelled", "declined", "expired", "failed")


def _case_variants(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), word.capitalize(), f" {word.capitalize()} "])


def _status_word(params: ItemsGetter) -> st.SearchStrategy[Mutation]:
    def set_word(effect: Effect, label: str) -> Callable[[Any], Mutation]:
        return lambda v: _mutation(effect, label, _set_item(params, "Key", "TransactionStatus", v))

    other = st.one_of(any_text, st.integers(), st.none(), st.booleans()).filter(
        lambda v: not isinstance(v, str) or v.strip().lower() not in {"completed", *FINAL}
    )
    return st.one_of(
        _case_variants("completed").map(set_word(N, "TransactionStatus: Completed in another case")),
        st.sampled_from(FINAL).flatmap(_case_variants).map(set_word(FS, "TransactionStatus: final failure")),
        other.map(set_word(E, "TransactionStatus: not final")),
        st.just(_mutation(E, "TransactionStatus: missing", _drop_item(params, "Key", "TransactionStatus"))),
        non_scalars.map(set_word(B, "TransactionStatus: not a scalar")),
    )


def _subject(params: ItemsGetter) -> st.SearchStrategy[Mutation]:
    """The payout asked about: the OriginatorConversationID parameter, else the echoed Occasion."""

    def both(value: Any) -> Callable[[dict[str, Any]], bool]:
        def apply(body: dict[str, Any]) -> bool:
            changed = _set_item(params, "Key", "OriginatorConversationID", value)(body)
            ref = _at("Result", "ReferenceData", "ReferenceItem")(body)
            if ref is not None and ref.get("Key") == "Occasion":
                ref["Value"] = value
                # Changed too: with the parameters emptied by another mutation, the Occasion alone
                # carried this one, and a body reported unchanged was expected to be accepted.
                changed = True
            return changed

        return apply

    other = st.one_of(any_text.filter(lambda s: s.strip() != ""), st.integers())
    return st.one_of(
        other.map(lambda v: _mutation(B, "subject: another payout", both(v))),
        st.just(
            _mutation(N, "subject: only in Occasion", _drop_item(params, "Key", "OriginatorConversationID"))
        ),
        non_scalars.map(lambda v: _mutation(B, "subject: not a scalar", both(v))),
    )


def status_result_menu(amount: int) -> Menu:
    res = _at("Result")
    params = _items(_at("Result", "ResultParameters"), "ResultParameter")
    known = {
        "Amount",
        "TransactionAmount",
        "ReceiptNo",
        "TransactionReceipt",
        "TransactionStatus",
        "OriginatorConversationID",
        "Originator Conversation ID",
    }
    return _result_menu(False) | {
        "2 ResultParameters": _container_field(res, "ResultParameters", "ResultParameter"),
        "4 params": _item_list_field(params, "Key", known, 13),
        "5 subject": _subject(params),
        "5 Amount": _amount_item(params, "Key", ("Amount",), amount),
        "5 ReceiptNo": _receipt_item(params, "Key", "ReceiptNo"),
        "5 TransactionStatus": _status_word(params),
        "5 DebitPartyName": _scalar_item(params, "Key", "DebitPartyName"),
    }


# --- cases ----------------------------------------------------------------------------------


def has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any], menu: Menu) -> Case:
    """The genuine body with one to four fields mutated (containers first), sometimes broken at the
    byte level as well."""
    fields = sorted(draw(st.lists(st.sampled_from(sorted(menu)), min_size=1, max_size=4, unique=True)))
    body = copy.deepcopy(template)
    effects: set[Effect] = set()
    labels: list[str] = []
    for field in fields:
        mutation = draw(menu[field])
        if mutation.apply(body):
            effects.add(mutation.effect)
            labels.append(mutation.label)
    if has_lone_surrogate(body):
        effects.add(B)
        labels.append("text with a lone surrogate")
    raw = dumps(body)
    if draw(st.integers(0, 9)) == 0:
        raw = draw(broken_bytes(raw))
        effects.add(B)
        labels.append("bytes broken")
    return Case(raw, frozenset(effects), tuple(labels))
