"""Call handlers: `Ctx -> top-level reply fields`, raising ApiError for Deriv errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import account, core, payments

if TYPE_CHECKING:
    from ..engine import Handler

HANDLERS: dict[str, Handler] = {
    "authorize": core.authorize,
    "logout": core.logout,
    "ping": core.ping,
    "time": core.time_,
    "forget": core.forget,
    "forget_all": core.forget_all,
    "website_status": core.website_status,
    "balance": account.balance,
    "get_settings": account.get_settings,
    "account_list": account.account_list,
    "statement": account.statement,
    "transaction": account.transaction,
    "verify_email": payments.verify_email,
    "paymentagent_transfer": payments.paymentagent_transfer,
    "paymentagent_withdraw": payments.paymentagent_withdraw,
    "paymentagent_withdraw_justification": payments.paymentagent_withdraw_justification,
    "paymentagent_list": payments.paymentagent_list,
    "paymentagent_details": payments.paymentagent_details,
}
