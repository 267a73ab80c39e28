"""TransactionRepository: the Transaction aggregate and its evidence attachments (PEC 3.1.5-3.1.6).

One row in `transactions` plus at most one row in each attachment table. Writes check the
version read (optimistic), and get_for_update() takes the row lock for the whole
transaction, so two workers cannot both move one transaction forward.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from functools import cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Column,
    Row,
    Select,
    Table,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from application.errors import DuplicateIdempotencyKey
from application.unit_of_work import EventSource
from domain.payments.attachments import DerivTransfer, DerivWithdrawal, MpesaDisbursement, MpesaRequest
from domain.payments.errors import DuplicateReceipt
from domain.payments.status import TransactionStatus, TransactionType
from domain.payments.transaction import Transaction
from domain.shared.errors import ConcurrentModification
from domain.shared.ids import TransactionId, UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money
from persistence.tables import (
    deriv_transfers,
    deriv_withdrawals,
    mpesa_disbursements,
    mpesa_requests,
    saga_steps,
    transactions,
)
from persistence.types import UtcDateTime

Attachment = MpesaRequest | MpesaDisbursement | DerivTransfer | DerivWithdrawal

_BY_ID_FOR_UPDATE = select(transactions).where(transactions.c.id == bindparam("tx_id")).with_for_update()
_ID_BY_CHECKOUT_FOR_UPDATE = (
    select(mpesa_requests.c.transaction_id)
    .where(mpesa_requests.c.checkout_request_id == bindparam("value"))
    .with_for_update()
)
# The sweeper's: a row another worker holds locked is that worker's to move, not waited for.
_BY_ID_FOR_UPDATE_SKIP_LOCKED = (
    select(transactions).where(transactions.c.id == bindparam("tx_id")).with_for_update(skip_locked=True)
)
_ID_BY_ORIGINATOR = select(mpesa_disbursements.c.transaction_id).where(
    mpesa_disbursements.c.originator_conversation_id == bindparam("value")
)
_INSERT = insert(transactions)
_UPDATE = (
    update(transactions)
    .where(transactions.c.id == bindparam("b_id"), transactions.c.version == bindparam("b_old_version"))
    .values(
        status=bindparam("status"),
        converted_amount_cents=bindparam("converted_amount_cents"),
        converted_amount_currency=bindparam("converted_amount_currency"),
        rate_quote_id=bindparam("rate_quote_id"),
        rate_base=bindparam("rate_base"),
        rate_quote=bindparam("rate_quote"),
        rate_value=bindparam("rate_value"),
        rate_locked_at=bindparam("rate_locked_at"),
        rate_expires_at=bindparam("rate_expires_at"),
        rate_reference=bindparam("rate_reference"),
        failure_reason=bindparam("failure_reason"),
        version=bindparam("version"),
        updated_at=bindparam("updated_at"),
        saga_due_at=bindparam("saga_due_at"),
    )
)

# Which attachment lives in which table, and which attachments each flow has.
_ATTACHMENT_TABLES: dict[str, Table] = {
    "mpesa_request": mpesa_requests,
    "mpesa_disbursement": mpesa_disbursements,
    "deriv_transfer": deriv_transfers,
    "deriv_withdrawal": deriv_withdrawals,
}
_FLOW_ATTACHMENTS = {
    # a deposit's B2C record is its refund (approved in review)
    TransactionType.DEPOSIT: ("mpesa_request", "deriv_transfer", "mpesa_disbursement"),
    TransactionType.WITHDRAWAL: ("mpesa_disbursement", "deriv_withdrawal"),
}


def _with_attachments(*columns: Any) -> Select[Any]:
    """`columns` and every attachment row of the transaction in one statement: each attachment is
    1:1 by its primary key transaction_id, its columns labelled "<attachment>__<column>"."""
    joined: Any = transactions
    for name, table in _ATTACHMENT_TABLES.items():
        columns = (*columns, *(c.label(f"{name}__{c.name}") for c in table.c))
        joined = joined.outerjoin(table, table.c.transaction_id == transactions.c.id)
    return select(*columns).select_from(joined)


# A plain read: the row and its attachments in one statement. A locking read: on MariaDB one
# statement too (_step_read); elsewhere the row under its lock, then the attachments (a join
# would lock their rows too, which the callbacks write).
_READ_BY_ID = _with_attachments(*transactions.c).where(transactions.c.id == bindparam("tx_id"))
_READ_BY_KEY = _with_attachments(*transactions.c).where(
    transactions.c.idempotency_key_hash == bindparam("key_hash"),
    transactions.c.user_id == bindparam("user_id"),
)
_ATTACHMENTS_BY_ID = _with_attachments().where(transactions.c.id == bindparam("tx_id"))
# An STK answer names only its CheckoutRequestID: the transaction and its evidence in one read.
_READ_BY_CHECKOUT = _with_attachments(*transactions.c).where(
    mpesa_requests.c.checkout_request_id == bindparam("value")
)
# The saga's step read: the attachments and the saga-step journal in one plain statement after the
# row lock (one row per step, the attachment columns repeated; one row of NULL steps when none).
_STEP_COLUMNS = tuple(c.label(f"step__{c.name}") for c in saga_steps.c if c.name != "transaction_id")
_ATTACHMENTS_AND_STEPS_BY_ID = (
    _with_attachments(*_STEP_COLUMNS)
    .outerjoin(saga_steps, saga_steps.c.transaction_id == transactions.c.id)
    .where(transactions.c.id == bindparam("tx_id"))
)


# The saga's step read on MariaDB, one statement: the row under its lock, and each attachment of the
# transaction's flow and its saga-step rows as JSON from correlated subqueries. A join would lock
# the attachment rows, and the gaps where they are missing (which, with time-ordered ids, is where
# every other transaction's new evidence goes); a locking read does not lock what its subqueries
# read, and they are evaluated after the row lock is granted, so they see what the last holder
# committed (a derived table would not: it is read before the lock wait).
def _json_of(table: Table, columns: tuple[Column[Any], ...]) -> Any:
    pairs: list[Any] = []
    for c in columns:
        pairs += [literal_column(f"'{c.name}'"), c]
    return func.json_object(*pairs)


def _json_columns(table: Table) -> tuple[Column[Any], ...]:
    return tuple(c for c in table.c if c.name != "transaction_id")  # the transaction's own id


_JSON_ATTACHMENT = {
    name: select(_json_of(table, _json_columns(table)))
    .where(table.c.transaction_id == transactions.c.id)
    .scalar_subquery()
    for name, table in _ATTACHMENT_TABLES.items()
}
_STEPS_JSON = (
    select(func.json_arrayagg(_json_of(saga_steps, _json_columns(saga_steps))))
    .where(saga_steps.c.transaction_id == transactions.c.id)
    .scalar_subquery()
)


def _step_read(*, skip_locked: bool, steps: bool = True) -> Select[Any]:
    flows: dict[str, list[str]] = {}
    for tx_type, names in _FLOW_ATTACHMENTS.items():
        for name in names:
            flows.setdefault(name, []).append(tx_type.value)
    # only the attachments the transaction's flow has: a deposit never reads deriv_withdrawals
    attached = []
    for name, types in flows.items():
        read: Any = _JSON_ATTACHMENT[name]
        if len(types) == 1:  # literal: no bind parameter to expand per execution
            read = case((transactions.c.type == literal_column(f"'{types[0]}'"), read), else_=None)
        attached.append(read.label(f"json__{name}"))
    if steps:
        attached.append(_STEPS_JSON.label("json__steps"))
    return (
        select(*transactions.c, *attached)
        .where(transactions.c.id == bindparam("tx_id"))
        .with_for_update(skip_locked=skip_locked)
    )


_STEP_READ = _step_read(skip_locked=False)
_STEP_READ_SKIP_LOCKED = _step_read(skip_locked=True)
_LOCKED_READ = _step_read(skip_locked=False, steps=False)  # get_for_update's, on MariaDB


def _decoded(table: Table, values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A JSON object of `table`'s columns (timestamps as text) as labelled "<prefix>__<column>"."""
    out: dict[str, Any] = {}
    for c in _json_columns(table):
        value = values.get(c.name)
        if value is not None and isinstance(c.type, UtcDateTime):
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)
        out[f"{prefix}__{c.name}"] = value
    return out


def _money(cents: int | None, currency: str | None) -> Money | None:
    return None if cents is None or currency is None else Money(int(cents), Currency(currency))


def _transaction_row(tx: Transaction) -> dict[str, Any]:
    rate = tx.locked_rate
    return {
        "status": tx.status.value,
        "converted_amount_cents": tx.converted_amount.amount_minor if tx.converted_amount else None,
        "converted_amount_currency": tx.converted_amount.currency.value if tx.converted_amount else None,
        "rate_quote_id": rate.quote_id if rate else None,
        "rate_base": rate.base.value if rate else None,
        "rate_quote": rate.quote.value if rate else None,
        "rate_value": f"{rate.rate.numerator}/{rate.rate.denominator}" if rate else None,
        "rate_locked_at": rate.locked_at if rate else None,
        "rate_expires_at": rate.expires_at if rate else None,
        "rate_reference": _fraction_text(rate.reference) if rate else None,
        "failure_reason": tx.failure_reason,
        "version": tx.version,
        "updated_at": tx.updated_at,
    }


@cache
def _update_with_attachment_statement(
    name: str, transaction_columns: tuple[str, ...], attachment_columns: tuple[str, ...]
) -> Update:
    """SqlTransactionRepository._update_with_attachment's multi-table UPDATE, built once per
    attachment (its values bound per call: building it per save, 26 columns coerced and its cache
    key computed, cost more CPU than sending it). Parameters: t_<column> (transactions), a_<column>
    (the attachment), w_id, w_old_version and w_before_status (the rows as read)."""
    table = _ATTACHMENT_TABLES[name]
    values: dict[Any, Any] = {
        transactions.c[key]: bindparam(f"t_{key}", type_=transactions.c[key].type)
        for key in transaction_columns
    }
    values |= {table.c[key]: bindparam(f"a_{key}", type_=table.c[key].type) for key in attachment_columns}
    return (
        update(transactions)
        .where(
            transactions.c.id == bindparam("w_id", type_=transactions.c.id.type),
            transactions.c.version == bindparam("w_old_version", type_=transactions.c.version.type),
        )
        .where(table.c.transaction_id == transactions.c.id)
        .where(table.c.status == bindparam("w_before_status", type_=table.c.status.type))
        .values(values)
    )


def _fraction_text(value: Fraction | None) -> str | None:
    return None if value is None else f"{value.numerator}/{value.denominator}"


def _rate_from_row(row: Row[Any]) -> LockedRate | None:
    if row.rate_value is None:
        return None
    return LockedRate(
        row.rate_quote_id,
        Currency(row.rate_base),
        Currency(row.rate_quote),
        Fraction(row.rate_value),
        row.rate_locked_at,
        row.rate_expires_at,
        None if row.rate_reference is None else Fraction(row.rate_reference),
    )


def _attachment_row(record: Attachment) -> dict[str, Any]:
    row: dict[str, Any] = {
        "transaction_id": record.transaction_id.value,
        "amount_cents": record.amount.amount_minor,
        "amount_currency": record.amount.currency.value,
        "status": str(record.status),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    if isinstance(record, MpesaRequest):
        row |= {
            "checkout_request_id": record.checkout_request_id,
            "merchant_request_id": record.merchant_request_id,
            "phone": record.phone.value,
            "result_code": record.result_code,
            "result_desc": record.result_desc,
            "mpesa_receipt_number": record.mpesa_receipt_number,
            "raw_callback": record.raw_callback,
        }
    elif isinstance(record, MpesaDisbursement):
        row |= {
            "originator_conversation_id": record.originator_conversation_id,
            "conversation_id": record.conversation_id,
            "phone": record.phone.value,
            "result_code": record.result_code,
            "result_desc": record.result_desc,
            "transaction_receipt": record.transaction_receipt,
            "raw_result": record.raw_result,
        }
    elif isinstance(record, DerivTransfer):
        row |= {
            "transfer_id": record.transfer_id,
            "client_loginid": record.client_loginid.value,
            "deriv_transaction_id": record.deriv_transaction_id,
        }
    else:
        row |= {
            "client_loginid": record.client_loginid.value,
            "deriv_transaction_id": record.deriv_transaction_id,
        }
    return row


def _attachment_from_row(name: str, row: Any) -> Attachment:
    common: dict[str, Any] = {
        "transaction_id": TransactionId(row.transaction_id),
        "amount": Money(int(row.amount_cents), Currency(row.amount_currency)),
        "status": row.status,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if name == "mpesa_request":
        return MpesaRequest(
            **common,
            checkout_request_id=row.checkout_request_id,
            merchant_request_id=row.merchant_request_id,
            phone=PhoneNumber(row.phone),
            result_code=row.result_code,
            result_desc=row.result_desc,
            mpesa_receipt_number=row.mpesa_receipt_number,
            raw_callback=row.raw_callback,
        )
    if name == "mpesa_disbursement":
        return MpesaDisbursement(
            **common,
            originator_conversation_id=row.originator_conversation_id,
            conversation_id=row.conversation_id,
            phone=PhoneNumber(row.phone),
            result_code=row.result_code,
            result_desc=row.result_desc,
            transaction_receipt=row.transaction_receipt,
            raw_result=row.raw_result,
        )
    if name == "deriv_transfer":
        return DerivTransfer(
            **common,
            transfer_id=row.transfer_id,
            client_loginid=DerivLoginId(row.client_loginid),
            deriv_transaction_id=row.deriv_transaction_id,
        )
    return DerivWithdrawal(
        **common,
        client_loginid=DerivLoginId(row.client_loginid),
        deriv_transaction_id=row.deriv_transaction_id,
    )


class SqlTransactionRepository:
    def __init__(self, connection: AsyncConnection, track: Callable[[EventSource], None]) -> None:
        self._connection = connection
        self._track = track
        # What was read, so save() knows the version to check and which rows exist.
        self._loaded: dict[TransactionId, tuple[int, dict[str, Attachment | None]]] = {}
        # The saga's "nothing to do before" for the next save of a transaction (else NULL)
        self._due: dict[TransactionId, datetime] = {}

    def look_again_at(self, tx_id: TransactionId, at: datetime) -> None:
        """Written with the transaction's next save in this unit of work (transactions.saga_due_at)."""
        self._due[tx_id] = at

    async def add(self, tx: Transaction) -> None:
        # No savepoint: a duplicate key fails the first insert, which writes nothing, and the
        # caller abandons the unit of work (create_once).
        try:
            await self._insert(tx)
        except IntegrityError as error:
            if "idempotency_key_hash" in str(error.orig):
                raise DuplicateIdempotencyKey("a transaction with this idempotency key exists") from error
            raise
        self._track(tx)

    async def _insert(self, tx: Transaction) -> None:
        await self._connection.execute(
            _INSERT,
            {
                "id": tx.id.value,
                "user_id": tx.user_id.value,
                "type": tx.type.value,
                "amount_cents": tx.amount.amount_minor,
                "amount_currency": tx.amount.currency.value,
                "phone": tx.phone.value,
                "deriv_login_id": tx.deriv_login_id.value,
                "idempotency_key_hash": tx.idempotency_key_hash,
                "created_at": tx.created_at,
                **_transaction_row(tx),
            },
        )
        attachments = self._attachments_of(tx)
        for name, record in attachments.items():
            if record is not None:
                await self._connection.execute(insert(_ATTACHMENT_TABLES[name]), _attachment_row(record))
        self._loaded[tx.id] = (tx.version, attachments)

    async def get(self, tx_id: TransactionId) -> Transaction | None:
        row = (await self._connection.execute(_READ_BY_ID, {"tx_id": tx_id.value})).first()
        return None if row is None else self._reconstitute(row, row)

    async def get_for_update(self, tx_id: TransactionId) -> Transaction | None:
        if self._connection.dialect.name in ("mysql", "mariadb"):
            found = await self._read_locked(_LOCKED_READ, tx_id)
            return None if found is None else found[0]
        row = (await self._connection.execute(_BY_ID_FOR_UPDATE, {"tx_id": tx_id.value})).first()
        if row is None:
            return None
        attached = (await self._connection.execute(_ATTACHMENTS_BY_ID, {"tx_id": tx_id.value})).one()
        return self._reconstitute(row, attached)

    def resume(self, tx: Transaction) -> None:
        self._loaded[tx.id] = (tx.version, self._attachments_of(tx))
        self._track(tx)

    async def get_for_step(
        self, tx_id: TransactionId, *, skip_locked: bool = False
    ) -> tuple[Transaction, list[Any]] | None:
        """The transaction under its row lock and its saga-step rows (labelled "step__<column>"),
        in one statement on MariaDB (_step_read), two elsewhere; None when it does not exist or,
        with `skip_locked`, another database transaction holds it."""
        if self._connection.dialect.name in ("mysql", "mariadb"):
            return await self._read_locked(_STEP_READ_SKIP_LOCKED if skip_locked else _STEP_READ, tx_id)
        locking = _BY_ID_FOR_UPDATE_SKIP_LOCKED if skip_locked else _BY_ID_FOR_UPDATE
        row = (await self._connection.execute(locking, {"tx_id": tx_id.value})).first()
        if row is None:
            return None
        rows = (await self._connection.execute(_ATTACHMENTS_AND_STEPS_BY_ID, {"tx_id": tx_id.value})).all()
        steps = [r for r in rows if r.step__step is not None]
        return self._reconstitute(row, rows[0]), steps

    async def _read_locked(
        self, statement: Select[Any], tx_id: TransactionId
    ) -> tuple[Transaction, list[Any]] | None:
        """One locking read (_step_read): the transaction, its attachments, its step rows if asked."""
        row = (await self._connection.execute(statement, {"tx_id": tx_id.value})).first()
        if row is None:
            return None
        attached: dict[str, Any] = {}
        for name, table in _ATTACHMENT_TABLES.items():
            text = row._mapping[f"json__{name}"]
            if text is None:
                attached |= {f"{name}__{c.name}": None for c in table.c}
            else:
                attached |= {f"{name}__transaction_id": row.id, **_decoded(table, json.loads(text), name)}
        steps = [
            SimpleNamespace(**_decoded(saga_steps, step, "step"))
            for step in json.loads(row._mapping.get("json__steps") or "[]")
        ]
        return self._reconstitute(row, SimpleNamespace(_mapping=attached)), steps  # type: ignore[arg-type]

    async def find_by_idempotency_key(self, user_id: UserId, key_hash: str) -> Transaction | None:
        params = {"key_hash": key_hash, "user_id": user_id.value}
        row = (await self._connection.execute(_READ_BY_KEY, params)).first()
        return None if row is None else self._reconstitute(row, row)

    async def list_for_user(
        self, user_id: UserId, *, limit: int, before: TransactionId | None = None
    ) -> list[Transaction]:
        query = (
            select(transactions.c.id)
            .where(transactions.c.user_id == user_id.value)
            .order_by(transactions.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(transactions.c.id < before.value)
        ids = (await self._connection.execute(query)).scalars().all()
        found = [await self.get(TransactionId(tx_id)) for tx_id in ids]
        return [tx for tx in found if tx is not None]

    async def find_by_checkout_request_id(
        self, checkout_request_id: str, *, hold_absence: bool = False
    ) -> Transaction | None:
        params = {"value": checkout_request_id}
        row = (await self._connection.execute(_READ_BY_CHECKOUT, params)).first()
        if row is not None:
            return self._reconstitute(row, row)
        # Absent from the snapshot: a locking read sees the latest commit and, when there is still
        # nothing, holds the key's gap until this unit of work ends.
        if hold_absence and (await self._connection.execute(_ID_BY_CHECKOUT_FOR_UPDATE, params)).first():
            raise ConcurrentModification(f"MpesaRequest {checkout_request_id} was stored meanwhile")
        return None

    async def find_by_originator_conversation_id(self, originator_conversation_id: str) -> Transaction | None:
        return await self._load_by_attachment(_ID_BY_ORIGINATOR, originator_conversation_id)

    async def save(self, tx: Transaction) -> None:
        loaded = self._loaded.get(tx.id)
        if loaded is None:
            raise ConcurrentModification(f"transaction {tx.id} was not loaded in this unit of work")
        old_version, old_attachments = loaded
        attachments = self._attachments_of(tx)
        changed = [
            name
            for name, record in attachments.items()
            if record is not None and record != old_attachments.get(name)
        ]
        updated = [name for name in changed if old_attachments.get(name) is not None]
        joined = None
        if (
            tx.version != old_version
            and len(updated) == 1
            and self._connection.dialect.name in ("mysql", "mariadb")
        ):
            # The usual change (a step's status and its evidence): one multi-table UPDATE, the
            # version check on the transaction row guarding both rows; a new record (the credit's
            # transfer intent) inserted after it.
            joined = updated[0]
            await self._update_with_attachment(
                tx, old_version, joined, attachments[joined], old_attachments[joined]
            )
        elif tx.version != old_version:
            # A save without the saga's word (an operator's, a callback's) clears it: the sweeper looks.
            due = self._due.pop(tx.id, None)
            result = await self._connection.execute(
                _UPDATE,
                {
                    "b_id": tx.id.value,
                    "b_old_version": old_version,
                    **_transaction_row(tx),
                    "saga_due_at": due,
                },
            )
            if result.rowcount != 1:
                raise ConcurrentModification(f"transaction {tx.id} changed since it was read")
        for name, record in attachments.items():
            before = old_attachments.get(name)
            if record is None or record == before or name == joined:
                continue
            table = _ATTACHMENT_TABLES[name]
            row = _attachment_row(record)
            try:
                if before is None:
                    await self._connection.execute(insert(table), row)
                else:
                    # Guarded by the status read as well as the version: an evidence row is never
                    # reset to what a save read, even by a writer that did not move the version.
                    result = await self._connection.execute(
                        update(table)
                        .where(table.c.transaction_id == tx.id.value, table.c.status == str(before.status))
                        .values(row)
                    )
                    if result.rowcount != 1:
                        raise ConcurrentModification(f"{type(record).__name__} of {tx.id} changed since read")
            except IntegrityError as error:
                if "receipt" in str(error.orig):
                    raise DuplicateReceipt(f"{type(record).__name__}: receipt already recorded") from error
                raise
        self._loaded[tx.id] = (tx.version, attachments)
        self._track(tx)

    async def _update_with_attachment(
        self,
        tx: Transaction,
        old_version: int,
        name: str,
        record: Attachment | None,
        before: Attachment | None,
    ) -> None:
        assert record is not None and before is not None
        row = _transaction_row(tx)
        # As in the single-table save: the saga's "nothing to do before", or NULL (the sweeper looks).
        row["saga_due_at"] = self._due.pop(tx.id, None)
        evidence = {key: value for key, value in _attachment_row(record).items() if key != "transaction_id"}
        statement = _update_with_attachment_statement(name, tuple(row), tuple(evidence))
        params = {f"t_{key}": value for key, value in row.items()}
        params |= {f"a_{key}": value for key, value in evidence.items()}
        # the evidence row as read, too (see save)
        params |= {"w_id": tx.id.value, "w_old_version": old_version, "w_before_status": str(before.status)}
        try:
            result = await self._connection.execute(statement, params)
        except IntegrityError as error:
            if "receipt" in str(error.orig):
                raise DuplicateReceipt(f"{type(record).__name__}: receipt already recorded") from error
            raise
        if result.rowcount < 1:
            raise ConcurrentModification(f"transaction {tx.id} changed since it was read")

    # --- reading ------------------------------------------------------------------------

    async def _load_by_attachment(self, statement: Any, value: str) -> Transaction | None:
        tx_id = (await self._connection.execute(statement, {"value": value})).scalar_one_or_none()
        return None if tx_id is None else await self.get(TransactionId(tx_id))

    def _reconstitute(self, row: Row[Any], attached: Row[Any]) -> Transaction:
        """The aggregate from its `transactions` row and the labelled attachment columns."""
        tx_type = TransactionType(row.type)
        attachments: dict[str, Attachment | None] = {}
        values = attached._mapping
        for name in _FLOW_ATTACHMENTS[tx_type]:
            if values[f"{name}__transaction_id"] is None:
                attachments[name] = None
                continue
            columns = {c.name: values[f"{name}__{c.name}"] for c in _ATTACHMENT_TABLES[name].c}
            attachments[name] = _attachment_from_row(name, SimpleNamespace(**columns))
        tx = Transaction.reconstitute(
            id=TransactionId(row.id),
            user_id=UserId(row.user_id),
            type=tx_type,
            status=TransactionStatus(row.status),
            amount=Money(int(row.amount_cents), Currency(row.amount_currency)),
            idempotency_key_hash=row.idempotency_key_hash,
            locked_rate=_rate_from_row(row),
            converted_amount=_money(row.converted_amount_cents, row.converted_amount_currency),
            phone=PhoneNumber(row.phone),
            deriv_login_id=DerivLoginId(row.deriv_login_id),
            failure_reason=row.failure_reason,
            version=int(row.version),
            created_at=row.created_at,
            updated_at=row.updated_at,
            **attachments,  # type: ignore[arg-type]
        )
        self._loaded[tx.id] = (tx.version, attachments)
        self._track(tx)
        return tx

    @staticmethod
    def _attachments_of(tx: Transaction) -> dict[str, Attachment | None]:
        return {name: getattr(tx, name) for name in _FLOW_ATTACHMENTS[tx.type]}
