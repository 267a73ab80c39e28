"""initial schema: every table of PEC 3.4.1 and 11, plus what the flows need

Ids: UUIDv7 stored as BINARY(16), not CHAR(36). A v7 UUID is time-ordered, so its 16
big-endian bytes keep InnoDB's clustered primary key append-only (like AUTO_INCREMENT,
without a central counter), and every primary key, foreign key and secondary index that
carries an id is 16 bytes instead of 36 characters (up to 144 bytes in utf8mb4).
Money: BIGINT minor units beside a CHAR(3) currency. Timestamps: UTC, DATETIME(6) on MariaDB.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 01:26:08.209487
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_logs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("row_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
    )
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_logs_subject_type_subject_id"), ["subject_type", "subject_id"], unique=False
        )

    op.create_table(
        "domain_events",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("aggregate_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("aggregate_version", sa.Integer(), nullable=True),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.Column("publish_attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_events")),
    )
    with op.batch_alter_table("domain_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_domain_events_published_at_occurred_at"),
            ["published_at", "occurred_at"],
            unique=False,
        )

    op.create_table(
        "idempotency_keys",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("transaction_id", UUIDv7(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("scope", "key_hash", name=op.f("uq_idempotency_keys_scope_key_hash")),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", UUIDv7(), nullable=False),
        sa.Column("processed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
    )
    op.create_table(
        "users",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("phone", sa.String(length=15), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("roles", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("phone", name=op.f("uq_users_phone")),
    )
    op.create_table(
        "deriv_accounts",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("deriv_login_id", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("token_enc", sa.LargeBinary(), nullable=True),
        sa.Column("token_key_id", sa.String(length=32), nullable=True),
        sa.Column("scopes", sa.String(length=255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_deriv_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deriv_accounts")),
        sa.UniqueConstraint("deriv_login_id", name=op.f("uq_deriv_accounts_deriv_login_id")),
        sa.UniqueConstraint("user_id", "currency", name=op.f("uq_deriv_accounts_user_id_currency")),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=True),
        sa.Column("normal_side", sa.String(length=6), nullable=False),
        sa.Column("no_overdraft", sa.Boolean(), nullable=False),
        sa.Column("balance_cents", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_ledger_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_accounts_code")),
    )
    op.create_table(
        "transactions",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("converted_amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("converted_amount_currency", sa.String(length=3), nullable=True),
        sa.Column("rate_quote_id", sa.String(length=64), nullable=True),
        sa.Column("rate_base", sa.String(length=3), nullable=True),
        sa.Column("rate_quote", sa.String(length=3), nullable=True),
        sa.Column("rate_value", sa.String(length=64), nullable=True),
        sa.Column("rate_locked_at", UtcDateTime(), nullable=True),
        sa.Column("rate_expires_at", UtcDateTime(), nullable=True),
        sa.Column("phone", sa.String(length=15), nullable=False),
        sa.Column("deriv_login_id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key_hash", sa.String(length=64), nullable=False),
        sa.Column("failure_reason", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_transactions_amount_positive")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_transactions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("idempotency_key_hash", name=op.f("uq_transactions_idempotency_key_hash")),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transactions_status_updated_at"), ["status", "updated_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_transactions_user_id_created_at"), ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "user_address",
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("address_line_1_enc", sa.LargeBinary(), nullable=True),
        sa.Column("address_line_2_enc", sa.LargeBinary(), nullable=True),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=100), nullable=True),
        sa.Column("postcode_enc", sa.LargeBinary(), nullable=True),
        sa.Column("country_code", sa.String(length=2), nullable=True),
        sa.Column("pii_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_address_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_address")),
    )
    op.create_table(
        "user_compliance",
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("kyc_snapshot_enc", sa.LargeBinary(), nullable=True),
        sa.Column("kyc_taken_at", UtcDateTime(), nullable=True),
        sa.Column("kyc_status", sa.String(length=16), nullable=False),
        sa.Column("tax_residence", sa.String(length=64), nullable=True),
        sa.Column("tax_identification_number_enc", sa.LargeBinary(), nullable=True),
        sa.Column("aml_risk", sa.String(length=16), nullable=False),
        sa.Column("pii_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_compliance_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_compliance")),
    )
    op.create_table(
        "user_devices",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("added_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_devices_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_devices")),
        sa.UniqueConstraint("user_id", "device_id", name=op.f("uq_user_devices_user_id_device_id")),
    )
    op.create_table(
        "user_phone_verification",
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("phone", sa.String(length=15), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("verified_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_phone_verification_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_phone_verification")),
    )
    op.create_table(
        "user_profile",
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("date_of_birth_enc", sa.LargeBinary(), nullable=True),
        sa.Column("citizen", sa.String(length=2), nullable=True),
        sa.Column("place_of_birth", sa.String(length=2), nullable=True),
        sa.Column("pii_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_profile_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_profile")),
    )
    op.create_table(
        "deriv_transfers",
        sa.Column("transaction_id", UUIDv7(), nullable=False),
        sa.Column("transfer_id", sa.String(length=64), nullable=False),
        sa.Column("client_loginid", sa.String(length=32), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("deriv_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_deriv_transfers_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_deriv_transfers")),
        sa.UniqueConstraint("deriv_transaction_id", name=op.f("uq_deriv_transfers_deriv_transaction_id")),
        sa.UniqueConstraint("transfer_id", name=op.f("uq_deriv_transfers_transfer_id")),
    )
    op.create_table(
        "deriv_withdrawals",
        sa.Column("transaction_id", UUIDv7(), nullable=False),
        sa.Column("client_loginid", sa.String(length=32), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("deriv_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_deriv_withdrawals_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_deriv_withdrawals")),
        sa.UniqueConstraint("deriv_transaction_id", name=op.f("uq_deriv_withdrawals_deriv_transaction_id")),
    )
    op.create_table(
        "ledger_postings",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("transaction_id", UUIDv7(), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("reverses_posting_id", UUIDv7(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_posting_id"],
            ["ledger_postings.id"],
            name=op.f("fk_ledger_postings_reverses_posting_id_ledger_postings"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_ledger_postings_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_postings")),
        sa.UniqueConstraint("reverses_posting_id", name=op.f("uq_ledger_postings_reverses_posting_id")),
    )
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_postings_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "mpesa_disbursements",
        sa.Column("transaction_id", UUIDv7(), nullable=False),
        sa.Column("originator_conversation_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column("phone", sa.String(length=15), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result_code", sa.Integer(), nullable=True),
        sa.Column("result_desc", sa.String(length=255), nullable=True),
        sa.Column("transaction_receipt", sa.String(length=32), nullable=True),
        sa.Column("raw_result", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_mpesa_disbursements_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_mpesa_disbursements")),
        sa.UniqueConstraint(
            "originator_conversation_id", name=op.f("uq_mpesa_disbursements_originator_conversation_id")
        ),
        sa.UniqueConstraint("transaction_receipt", name=op.f("uq_mpesa_disbursements_transaction_receipt")),
    )
    op.create_table(
        "mpesa_requests",
        sa.Column("transaction_id", UUIDv7(), nullable=False),
        sa.Column("checkout_request_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_request_id", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=15), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result_code", sa.Integer(), nullable=True),
        sa.Column("result_desc", sa.String(length=255), nullable=True),
        sa.Column("mpesa_receipt_number", sa.String(length=32), nullable=True),
        sa.Column("raw_callback", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_mpesa_requests_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_mpesa_requests")),
        sa.UniqueConstraint("checkout_request_id", name=op.f("uq_mpesa_requests_checkout_request_id")),
        sa.UniqueConstraint("mpesa_receipt_number", name=op.f("uq_mpesa_requests_mpesa_receipt_number")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("posting_id", UUIDv7(), nullable=False),
        sa.Column("account_id", UUIDv7(), nullable=False),
        sa.Column("side", sa.String(length=6), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("transaction_id", UUIDv7(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"], name=op.f("fk_ledger_entries_account_id_ledger_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["posting_id"], ["ledger_postings.id"], name=op.f("fk_ledger_entries_posting_id_ledger_postings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_account_id_created_at"), ["account_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ledger_entries_posting_id"), ["posting_id"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping them first fails on MariaDB for
    # indexes that back a foreign key. Children before parents.
    op.drop_table("ledger_entries")
    op.drop_table("mpesa_requests")
    op.drop_table("mpesa_disbursements")
    op.drop_table("ledger_postings")
    op.drop_table("deriv_withdrawals")
    op.drop_table("deriv_transfers")
    op.drop_table("user_profile")
    op.drop_table("user_phone_verification")
    op.drop_table("user_devices")
    op.drop_table("user_compliance")
    op.drop_table("user_address")
    op.drop_table("transactions")
    op.drop_table("ledger_accounts")
    op.drop_table("deriv_accounts")
    op.drop_table("users")
    op.drop_table("processed_events")
    op.drop_table("idempotency_keys")
    op.drop_table("domain_events")
    op.drop_table("audit_logs")
