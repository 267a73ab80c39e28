"""The schema (PEC 3.4 and 11), as SQLAlchemy Core tables.

Money is BIGINT minor units with a CHAR(3) currency beside it; timestamps are UTC;
aggregate ids are UUIDv7 in BINARY(16) (see persistence.types.UUIDv7 for why).
Migrations in migrations/versions must agree with this file: tests/integration/
test_migrations.py runs Alembic's autogenerate comparison against both databases.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from persistence.types import UtcDateTime, UUIDv7

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
    ]


def _money(prefix: str, nullable: bool = False) -> list[Column[object]]:
    return [
        Column(f"{prefix}_cents", BigInteger, nullable=nullable),
        Column(f"{prefix}_currency", String(3), nullable=nullable),
    ]


# --- Identity -------------------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("phone", String(15), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("email_verified", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("roles", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    *_timestamps(),
)

# KYC/profile attributes that are not secrets; sensitive ones are AES-GCM ciphertexts.
user_profile = Table(
    "user_profile",
    metadata,
    Column("user_id", UUIDv7(), ForeignKey("users.id"), primary_key=True),
    Column("first_name", String(100), nullable=True),
    Column("last_name", String(100), nullable=True),
    Column("date_of_birth_enc", LargeBinary, nullable=True),
    Column("citizen", String(2), nullable=True),
    Column("place_of_birth", String(2), nullable=True),
    Column("pii_key_id", String(32), nullable=True),
    *_timestamps(),
)

# Regulatory state: the one authoritative KycSnapshot (PEC 3.1.3) plus compliance flags.
user_compliance = Table(
    "user_compliance",
    metadata,
    Column("user_id", UUIDv7(), ForeignKey("users.id"), primary_key=True),
    Column("kyc_snapshot_enc", LargeBinary, nullable=True),
    Column("kyc_taken_at", UtcDateTime(), nullable=True),
    Column("kyc_status", String(16), nullable=False),
    Column("tax_residence", String(64), nullable=True),
    Column("tax_identification_number_enc", LargeBinary, nullable=True),
    Column("aml_risk", String(16), nullable=False),
    Column("pii_key_id", String(32), nullable=True),
    *_timestamps(),
)

user_address = Table(
    "user_address",
    metadata,
    Column("user_id", UUIDv7(), ForeignKey("users.id"), primary_key=True),
    Column("address_line_1_enc", LargeBinary, nullable=True),
    Column("address_line_2_enc", LargeBinary, nullable=True),
    Column("city", String(100), nullable=True),
    Column("state", String(100), nullable=True),
    Column("postcode_enc", LargeBinary, nullable=True),
    Column("country_code", String(2), nullable=True),
    Column("pii_key_id", String(32), nullable=True),
    *_timestamps(),
)

user_phone_verification = Table(
    "user_phone_verification",
    metadata,
    Column("user_id", UUIDv7(), ForeignKey("users.id"), primary_key=True),
    Column("phone", String(15), nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("verified_at", UtcDateTime(), nullable=True),
    *_timestamps(),
)

user_devices = Table(
    "user_devices",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("name", String(100), nullable=False),
    Column("added_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    UniqueConstraint("user_id", "device_id"),
)

deriv_accounts = Table(
    "deriv_accounts",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=False),
    Column("deriv_login_id", String(32), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("token_enc", LargeBinary, nullable=True),
    Column("token_key_id", String(32), nullable=True),
    Column("scopes", String(255), nullable=False),
    # REST (new-API) bindings: the OAuth refresh token (encrypted, same key id) and the access
    # token's expiry. A REST account's deriv_login_id is "@nickname".
    Column("refresh_token_enc", LargeBinary, nullable=True),
    Column("token_expires_at", UtcDateTime(), nullable=True),
    *_timestamps(),
    # PEC 3.1.2: one user <-> one USD Deriv account.
    UniqueConstraint("user_id", "currency"),
)

# --- Payments -------------------------------------------------------------------------

transactions = Table(
    "transactions",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=False),
    Column("type", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    *_money("amount"),
    *_money("converted_amount", nullable=True),
    Column("rate_quote_id", String(64), nullable=True),
    Column("rate_base", String(3), nullable=True),
    Column("rate_quote", String(3), nullable=True),
    # Exact rational "numerator/denominator": never a float, never a rounded decimal.
    Column("rate_value", String(64), nullable=True),
    Column("rate_locked_at", UtcDateTime(), nullable=True),
    Column("rate_expires_at", UtcDateTime(), nullable=True),
    # The quote's reference (mid) rate, "numerator/denominator" (migration 0013); NULL: no spread.
    Column("rate_reference", String(64), nullable=True),
    Column("phone", String(15), nullable=False),
    Column("deriv_login_id", String(32), nullable=False),
    # Hash of the client's key, scoped by user and operation (domain IdempotencyKey).
    Column("idempotency_key_hash", String(64), nullable=False, unique=True),
    Column("failure_reason", String(255), nullable=True),
    Column("version", Integer, nullable=False),
    *_timestamps(),
    # The saga's word, written with the transaction it left waiting: nothing for time alone to do
    # before this, so the sweepers pass over it until then. NULL: no word (they look).
    Column("saga_due_at", UtcDateTime(), nullable=True),
    CheckConstraint("amount_cents > 0", name="amount_positive"),
    Index(None, "user_id", "created_at"),
    Index(None, "status", "updated_at"),
)

mpesa_requests = Table(
    "mpesa_requests",
    metadata,
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), primary_key=True),
    Column("checkout_request_id", String(64), nullable=False, unique=True),
    Column("merchant_request_id", String(64), nullable=False),
    Column("phone", String(15), nullable=False),
    *_money("amount"),
    Column("status", String(16), nullable=False),
    Column("result_code", Integer, nullable=True),
    Column("result_desc", String(255), nullable=True),
    Column("mpesa_receipt_number", String(32), nullable=True, unique=True),
    Column("raw_callback", Text, nullable=True),
    *_timestamps(),
)

mpesa_disbursements = Table(
    "mpesa_disbursements",
    metadata,
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), primary_key=True),
    Column("originator_conversation_id", String(64), nullable=False, unique=True),
    Column("conversation_id", String(64), nullable=True),
    Column("phone", String(15), nullable=False),
    *_money("amount"),
    Column("status", String(16), nullable=False),
    Column("result_code", Integer, nullable=True),
    Column("result_desc", String(255), nullable=True),
    Column("transaction_receipt", String(32), nullable=True, unique=True),
    Column("raw_result", Text, nullable=True),
    *_timestamps(),
)

deriv_transfers = Table(
    "deriv_transfers",
    metadata,
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), primary_key=True),
    Column("transfer_id", String(64), nullable=False, unique=True),
    Column("client_loginid", String(32), nullable=False),
    *_money("amount"),
    Column("deriv_transaction_id", BigInteger, nullable=True, unique=True),
    Column("status", String(16), nullable=False),
    *_timestamps(),
)

deriv_withdrawals = Table(
    "deriv_withdrawals",
    metadata,
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), primary_key=True),
    Column("client_loginid", String(32), nullable=False),
    *_money("amount"),
    Column("deriv_transaction_id", BigInteger, nullable=True, unique=True),
    Column("status", String(16), nullable=False),
    *_timestamps(),
)

# Request-level idempotency (PEC 10): one row per key hash and scope; the stored response
# is replayed to a repeat with the same request, for the retention window.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("scope", String(128), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("request_fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_code", Integer, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("transaction_id", UUIDv7(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    UniqueConstraint("scope", "key_hash"),
)

# --- Outbox, inbox, audit -------------------------------------------------------------

domain_events = Table(
    "domain_events",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("stream", String(64), nullable=False),
    Column("aggregate_type", String(64), nullable=False),
    Column("aggregate_id", String(64), nullable=False),
    Column("aggregate_version", Integer, nullable=True),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("published_at", UtcDateTime(), nullable=True),
    Column("publish_attempts", Integer, nullable=False),
    # Who caused the event (migration 0028): a trigger copies a financial event, with it, into
    # audit_pending. NULL on rows written before.
    Column("actor", String(64), nullable=True),
    # The relay claims unpublished rows with FOR UPDATE SKIP LOCKED through this index.
    Index(None, "published_at", "occurred_at"),
)

# Consumer tracking ("inbox"): written in the same transaction as the consumer's effect,
# so a redelivered event finds its row and does nothing.
processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("event_id", UUIDv7(), primary_key=True),
    Column("processed_at", UtcDateTime(), nullable=False),
)

# The saga's step journal: an external call that cannot be made idempotent by an id of ours
# (STK push) or that must be counted (queries, refunds) is written here, committed, before
# the call leaves; a worker that finds a started step it did not finish knows the call may
# have happened.
saga_steps = Table(
    "saga_steps",
    metadata,
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), primary_key=True),
    Column("step", String(32), primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("detail", String(255), nullable=True),
    # a call held back unsent (rate limit) waits until then; it did not count as an attempt
    Column("retry_at", UtcDateTime(), nullable=True),
)

audit_logs = Table(
    "audit_logs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("details", Text, nullable=False),
    # Hash chain (tamper evidence): each row carries the hash of the previous one.
    Column("prev_hash", String(64), nullable=True),
    Column("row_hash", String(64), nullable=True),
    # The audit_pending row this one was sealed from (NULL if sealed before migration 0008): a
    # pending row may be deleted only once a row here names it. Not hashed, so older rows verify.
    Column("pending_id", BigInteger, nullable=True),
    Index(None, "subject_type", "subject_id"),
    Index(None, "pending_id", unique=True),
)

# --- Wallet (double-entry ledger) -----------------------------------------------------

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("code", String(128), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=True),
    Column("normal_side", String(6), nullable=False),
    Column("no_overdraft", Boolean, nullable=False),
    Column("balance_cents", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    *_timestamps(),
    # A no-overdraft float's allowances under unretired float_leases: money out of it outside them
    # keeps its floor with this counted as spent (persistence/float_leases.py)
    Column("leased_cents", BigInteger, nullable=False, server_default="0"),
)

ledger_postings = Table(
    "ledger_postings",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), nullable=True),
    Column("description", String(255), nullable=False),
    # A posting can be reversed once; the reversal points at it.
    Column("reverses_posting_id", UUIDv7(), ForeignKey("ledger_postings.id"), nullable=True, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index(None, "transaction_id"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("posting_id", UUIDv7(), ForeignKey("ledger_postings.id"), nullable=False),
    # No foreign key (0027): its check share-locked the account's row, the hot floats' included.
    Column("account_id", UUIDv7(), nullable=False),
    Column("side", String(6), nullable=False),
    *_money("amount"),
    Column("transaction_id", UUIDv7(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    CheckConstraint("amount_cents > 0", name="amount_positive"),
    Index(None, "account_id", "created_at"),
    Index(None, "posting_id"),
)

# Hot accounts (migration 0026): a posting does not lock or update a system account that no rule
# guards (FX, spread, fees, suspense, ...), nor a float it only pays into; it writes here what it
# changed, one row per posting and account, in its own transaction. A roll-up (the relay daemon's)
# later adds the rows into ledger_accounts.balance_cents and deletes them in one transaction, so at
# every commit an account's balance is balance_cents + SUM(delta_cents) of its rows here, which the
# consistency checker proves equal to SUM(its entries). Kept apart from ledger_entries, which no
# UPDATE or DELETE may touch, and so that roll-up deletes exactly the rows it read, whatever order
# they committed in (a cursor over entry ids could skip one committed late).
ledger_balance_deltas = Table(
    "ledger_balance_deltas",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", UUIDv7(), nullable=False),
    Column("posting_id", UUIDv7(), nullable=False),
    # on the account's normal side, like balance_cents
    Column("delta_cents", BigInteger, nullable=False),
    UniqueConstraint("posting_id", "account_id"),
    Index(None, "account_id"),
)

# A process's allowance out of a float's headroom, booked without the float's row (migration 0029)
float_leases = Table(
    "float_leases",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("account_id", UUIDv7(), nullable=False),
    Column("owner", String(128), nullable=False),  # which process took it (for people)
    Column("allowance_cents", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("retired_at", UtcDateTime(), nullable=True),
    Index(None, "account_id", "retired_at"),
)

# --- Deriv gateway journal -------------------------------------------------------------

# The gateway's own write-ahead record of every money-moving Deriv call: "sending" is
# committed before the frame leaves, the result after. Deriv has no idempotency key, so a
# row left in SENDING after a crash means "outcome unknown: look in the statement first".
# Kept in the database, not Redis: the Redis here keeps nothing across a restart.
deriv_gateway_operations = Table(
    "deriv_gateway_operations",
    metadata,
    Column("operation_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("client_loginid", String(32), nullable=False),
    *_money("amount"),
    Column("description", String(250), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("fencing_token", BigInteger, nullable=True),
    Column("deriv_transaction_id", BigInteger, nullable=True, unique=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", String(255), nullable=True),
    Column("result", Text, nullable=True),
    *_timestamps(),
)

# --- M-Pesa callbacks kept for a person ---------------------------------------------------

# Callbacks that must never be acted on automatically (unknown id, mismatching amount or
# phone, reused receipt, wrong secret or address): the exact bytes, for review.
mpesa_callback_reviews = Table(
    "mpesa_callback_reviews",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", String(255), nullable=True),
    # The CheckoutRequestID or OriginatorConversationID the callback claims (untrusted).
    Column("correlation_id", String(64), nullable=True),
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), nullable=True),
    Column("remote_addr", String(45), nullable=True),
    Column("raw_body", LargeBinary, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Index(None, "correlation_id"),
    Index(None, "status", "received_at"),
)

# --- Review queue (migration 0009) -----------------------------------------------------

# Operators' proposals on transactions under review and their four-eyes decisions.
# open_transaction_id: the transaction id while PROPOSED, NULL once decided (one open proposal
# per transaction, by its unique index).
review_actions = Table(
    "review_actions",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), nullable=False),
    Column("open_transaction_id", UUIDv7(), nullable=True),
    Column("transaction_version", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(255), nullable=False),
    Column("deriv_transaction_id", BigInteger, nullable=True),
    Column("mpesa_receipt", String(32), nullable=True),
    Column("proposed_by", String(64), nullable=False),
    Column("proposed_at", UtcDateTime(), nullable=False),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("outcome", String(255), nullable=True),
    Index("ix_review_actions_transaction_id", "transaction_id"),
    Index("ix_review_actions_status", "status", "proposed_at"),
    Index("ux_review_actions_open_transaction_id", "open_transaction_id", unique=True),
)

# --- Paybill (C2B) deposits (migration 0012) --------------------------------------------

# A user's deposit reference: the account number (BillRefNumber) they pay the paybill with.
paybill_references = Table(
    "paybill_references",
    metadata,
    Column("reference", String(16), primary_key=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ux_paybill_references_user_id", "user_id", unique=True),
)

# One row per M-Pesa TransID (the inbox of paybill payments): the validation we answered and the
# confirmation that followed, and where the money went (a DEPOSIT transaction, or SUSPENSE). The
# MSISDN is kept only in its masked form.
c2b_payments = Table(
    "c2b_payments",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("trans_id", String(32), nullable=False),
    Column("shortcode", String(16), nullable=False),
    Column("bill_ref", String(32), nullable=False),
    *_money("amount"),
    Column("msisdn_shown", String(24), nullable=True),
    Column("status", String(16), nullable=False),
    Column("result_code", String(16), nullable=True),
    Column("reason", String(255), nullable=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=True),
    Column("transaction_id", UUIDv7(), ForeignKey("transactions.id"), nullable=True),
    Column("raw_validation", Text, nullable=True),
    Column("raw_confirmation", Text, nullable=True),
    # A suspense payment's open proposal (four eyes): give it to this user, proposed by whom;
    # resolved_by is the approver who carried it out.
    Column("proposed_user_id", UUIDv7(), nullable=True),
    Column("proposed_by", String(64), nullable=True),
    Column("resolved_by", String(64), nullable=True),
    *_timestamps(),
    Index("ux_c2b_payments_trans_id", "trans_id", unique=True),
    Index("ix_c2b_payments_status", "status", "updated_at"),
)

# A suspense payment refunded to its payer by Daraja's Reversal API (migration 0014): one row per
# reversal request, its OriginatorConversationID chosen when proposed and never changed.
paybill_refunds = Table(
    "paybill_refunds",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("trans_id", String(32), nullable=False),
    Column("originator_conversation_id", String(64), nullable=False),
    *_money("amount"),
    Column("status", String(16), nullable=False),
    Column("reason", String(255), nullable=False),
    Column("proposed_by", String(64), nullable=False),
    Column("approved_by", String(64), nullable=True),
    Column("answered_ocid", String(64), nullable=True),  # the id the gateway's sync answer named
    Column("conversation_id", String(64), nullable=True),
    Column("reversal_receipt", String(32), nullable=True),
    Column("result_code", String(32), nullable=True),
    Column("result_desc", String(255), nullable=True),
    Column("raw_result", Text, nullable=True),
    Column("posting_id", UUIDv7(), ForeignKey("ledger_postings.id"), nullable=True),
    *_timestamps(),
    Index("ux_paybill_refunds_ocid", "originator_conversation_id", unique=True),
    Index("ux_paybill_refunds_receipt", "reversal_receipt", unique=True),
    Index("ix_paybill_refunds_trans_id", "trans_id", "status"),
)

# --- Identity security (migration 0004) -------------------------------------------------

# Opaque refresh tokens, stored as SHA-256 only; rotated on every use. A family is one login
# session on one device: reusing a used token revokes the whole family.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=False),
    Column("family_id", UUIDv7(), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Index(None, "family_id"),
    Index(None, "user_id", "device_id"),
)

# One-time codes for phone and email verification: keyed hash only, expiring, attempt-limited.
verification_codes = Table(
    "verification_codes",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("consumed_at", UtcDateTime(), nullable=True),
    Index(None, "user_id", "purpose"),
)

# Audit records committed with their action but not yet in the chain: the sealer
# (persistence/audit_sealer.py) moves them into audit_logs, chained, right after the commit, so a
# business transaction never waits for the chain head. Rows here are deleted once sealed.
audit_pending = Table(
    "audit_pending",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("details", Text, nullable=False),
    sqlite_autoincrement=True,  # ids never reused (migration 0008): the delete guard names them
)

# The head of the audit_logs hash chain: one row (id 1), locked FOR UPDATE by the sealer while it
# appends, so chain order is serialised and equals id order.
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_audit_id", BigInteger, nullable=True),
    Column("last_hash", String(64), nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# --- The continuous auditor (migration 0013) --------------------------------------------

# One row per check per auditor run: what an ops console shows (OpsService.GetAuditorVerdicts).
audit_verdicts = Table(
    "audit_verdicts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("check_name", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # OK, FAIL, SKIPPED
    Column("summary", String(1000), nullable=False),
    Column("details", Text, nullable=False),  # JSON
    Column("checked_at", UtcDateTime(), nullable=False),
    Index("ix_audit_verdicts_checked_at", "checked_at"),
    Index("ix_audit_verdicts_check_name", "check_name", "id"),
)

# Where each incremental check got to (one row per check): the next run starts there.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", Text, nullable=False),  # JSON, the check's own shape
    Column("updated_at", UtcDateTime(), nullable=False),
)

# --- Reconciliation against the providers (application/reconciliation) -------------------

# One row per reconciliation run: its window, how it ended and how many items of each class it saw.
reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("trigger", String(16), nullable=False),  # cli | worker
    Column("window_from", UtcDateTime(), nullable=False),
    Column("window_to", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # RUNNING | SUCCEEDED | FAILED
    Column("error", String(500), nullable=True),
    Column("counts", Text, nullable=False),  # JSON {class: count} of the items this run saw
    Column("unexplained", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    Index(None, "started_at"),
)

# One row per difference (or match) found, once: `item_key` names the provider record or the
# evidence it is about, so re-running a window updates the row instead of adding another.
reconciliation_items = Table(
    "reconciliation_items",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("item_key", String(160), nullable=False, unique=True),
    Column("first_run_id", UUIDv7(), ForeignKey("reconciliation_runs.id"), nullable=False),
    Column("last_run_id", UUIDv7(), ForeignKey("reconciliation_runs.id"), nullable=False),
    Column("source", String(32), nullable=False),
    Column("item_class", String(32), nullable=False),
    Column("provider_ref", String(64), nullable=True),
    Column("transaction_id", UUIDv7(), nullable=True),
    *_money("provider_amount", nullable=True),
    *_money("penpay_amount", nullable=True),
    Column("occurred_at", UtcDateTime(), nullable=True),
    Column("detail", String(500), nullable=False),
    Column("review_status", String(16), nullable=False),  # NONE | OPEN | RESOLVED
    Column("suspense_posting_id", UUIDv7(), ForeignKey("ledger_postings.id"), nullable=True),
    *_timestamps(),
    # the operator who closed it, their explanation, when (migration 0024)
    Column("resolved_by", String(64), nullable=True),
    Column("resolution", String(255), nullable=True),
    Column("resolved_at", UtcDateTime(), nullable=True),
    # a write-off of its SUSPENSE proposed (NULL once rejected), and the posting its approval booked
    Column("write_off_proposed_by", String(64), nullable=True),
    Column("write_off_reason", String(255), nullable=True),
    Column("write_off_proposed_at", UtcDateTime(), nullable=True),
    Column("write_off_posting_id", UUIDv7(), ForeignKey("ledger_postings.id"), nullable=True),
    Index(None, "last_run_id"),
    Index(None, "item_class", "review_status"),
)

# How far each source has been reconciled (incremental runs start there).
reconciliation_cursors = Table(
    "reconciliation_cursors",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("reconciled_to", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# --- KYC attestations under four-eyes (migration 0016) -----------------------------------

# An operator's proposed KycSnapshot for a user on Deriv's REST API only, until a second person
# decides it. The identity fields are one AES-GCM ciphertext (key id beside it); one open
# proposal per user (open_user_id is NULL once decided).
kyc_attestations = Table(
    "kyc_attestations",
    metadata,
    Column("id", UUIDv7(), primary_key=True),
    Column("user_id", UUIDv7(), ForeignKey("users.id"), nullable=False),
    Column("open_user_id", UUIDv7(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("identity_enc", LargeBinary, nullable=False),
    Column("pii_key_id", String(32), nullable=False),
    Column("evidence", String(128), nullable=False),
    Column("proposed_by", String(64), nullable=False),
    Column("proposed_at", UtcDateTime(), nullable=False),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("outcome", String(255), nullable=True),
    Index("ix_kyc_attestations_user_id", "user_id"),
    Index("ix_kyc_attestations_status", "status", "proposed_at"),
    Index("ux_kyc_attestations_open_user_id", "open_user_id", unique=True),
)
