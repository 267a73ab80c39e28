"""What the simulators really executed (filled in by proving.simulator_books), which the
checker compares with the database (deriv_books, mpesa_books)."""

from __future__ import annotations

from dataclasses import dataclass

DERIV_TRANSFER_KIND = "paymentagent_transfer"  # agent -> client
DERIV_WITHDRAW_KIND = "paymentagent_withdraw"  # client -> agent
REFUND_SUFFIX = "-refund"


@dataclass(frozen=True, slots=True)
class DerivBookTransfer:
    """One executed paymentagent_transfer / paymentagent_withdraw in the Deriv books."""

    transfer_id: int
    kind: str
    from_loginid: str
    to_loginid: str
    amount_cents: int
    currency: str
    description: str
    # The PenPay operation id read from the description (`<transaction id>` or
    # `<transaction id>-refund`), None when the description is not a PenPay reference.
    operation_id: str | None
    debit_transaction_id: int | None = None


@dataclass(frozen=True, slots=True)
class DerivBooks:
    agent_loginid: str
    currency: str
    agent_balance_cents: int
    opening_balance_cents: int
    transfers: tuple[DerivBookTransfer, ...]
    adjustments_cents: int = 0  # the agent's adjustment entries (control API), for the report


@dataclass(frozen=True, slots=True)
class StkCharge:
    checkout_request_id: str
    amount_cents: int  # KES minor units (the simulator books whole shillings)
    phone: str
    charged: bool
    receipt: str | None = None


@dataclass(frozen=True, slots=True)
class B2CPayout:
    originator_conversation_id: str
    amount_cents: int
    phone: str
    paid: bool
    receipt: str | None = None
    # The PenPay transaction the OriginatorConversationID names, when it has a PenPay form;
    # used only when no mpesa_disbursements row carries this id.
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class MpesaBooks:
    stk: tuple[StkCharge, ...]
    b2c: tuple[B2CPayout, ...]
    utility_cents: int
    opening_utility_cents: int


@dataclass(frozen=True, slots=True)
class SimulatorBooks:
    deriv: DerivBooks | None = None
    mpesa: MpesaBooks | None = None
