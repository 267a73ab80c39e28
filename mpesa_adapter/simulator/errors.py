"""Daraja's gateway error envelope and the result-code catalogue (daraja-protocol.md sections 2.5, 3.4, 9)."""

from __future__ import annotations


class DarajaError(Exception):
    """A synchronous error, answered as `{requestId, errorCode, errorMessage}` with `status`."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


def bad_request(field: str) -> DarajaError:
    return DarajaError(400, "400.002.02", f"Bad Request - Invalid {field}")


def invalid_payload() -> DarajaError:
    return DarajaError(400, "400.002.05", "Invalid Request Payload")


INVALID_TOKEN = (404, "404.001.03", "Invalid Access Token")
# Per-API invalid-token answers seen in the portal pages (used when invalid_token_style == "per_api").
INVALID_TOKEN_PER_API = {
    "stk": INVALID_TOKEN,
    "stk_query": INVALID_TOKEN,
    "b2c": (401, "401.002.01", "Error Occurred - Invalid Access Token - {token}"),
    "balance": (401, "401.002.01", "Error Occurred - Invalid Access Token - {token}"),
    "status": (400, "400.003.01", "Invalid Access Token"),
    "reversal": (401, "401.002.01", "Error Occurred - Invalid Access Token - {token}"),
    "c2b_register": INVALID_TOKEN,
}
INVALID_AUTH_HEADER = (404, "404.001.04", "Invalid Authentication Header")
RESOURCE_NOT_FOUND = (404, "404.001.01", "Resource not found")
METHOD_NOT_ALLOWED = (405, "405.001", "Method Not Allowed")

MERCHANT_DOES_NOT_EXIST = (500, "500.001.1001", "Merchant does not exist")
WRONG_CREDENTIALS = (500, "500.001.1001", "[MerchantValidate] - Wrong credentials")
SUBSCRIBER_LOCKED = (
    500,
    "500.001.1001",
    "Unable to lock subscriber, a transaction is already in process for the current subscriber",
)
STK_PENDING = (500, "500.001.1001", "The transaction is being processed")
STK_UNKNOWN = (500, "500.001.1001", "The transaction does not exist")
DUPLICATE_OCID = (500, "500.002.1001", "Duplicate OriginatorConversationID.")
SPIKE_ARREST = (500, "500.003.02", "Error Occurred: Spike Arrest Violation")
QUOTA_VIOLATION = (500, "500.003.03", "Quota Violation")
INTERNAL_ERROR = (500, "500.003.1001", "Internal Server Error")

OAUTH_BAD_GRANT = (400, "400.008.02", "Invalid grant type passed")
OAUTH_BAD_AUTH_TYPE = (400, "400.008.01", "Invalid authentication type passed")


def err(spec: tuple[int, str, str], request_id: str | None = None) -> DarajaError:
    return DarajaError(spec[0], spec[1], spec[2], request_id)


SUCCESS_DESC = "The service request is processed successfully."

STK_RESULTS: dict[int | str, str] = {
    0: SUCCESS_DESC,
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule: less than the minimum transaction amount.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    4: "Declined due to limit rule: would exceed daily transfer limit.",
    8: "Declined due to limit rule: would exceed the maximum balance.",
    17: "Rule limited.",
    26: "System is busy. Please try again in few minutes.",
    1001: "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    1019: "Transaction has expired.",
    1025: "An error occurred while sending a push request.",
    1032: "Request cancelled by user.",
    1037: "DS timeout user cannot be reached.",
    2001: "The initiator information is invalid.",
    2028: "The request is not permitted according to product assignment.",
    8006: "The security credential is locked.",
    9999: "Error while sending push",
    "SFC_IC0003": "The operator does not exist.",
}

B2C_RESULTS: dict[int | str, str] = {
    0: SUCCESS_DESC,
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule: less than the minimum transaction amount.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    4: "Declined due to limit rule: would exceed daily transfer limit.",
    8: "Declined due to limit rule: would exceed the maximum balance.",
    11: "The DebitParty is in an invalid state.",
    15: "Duplicate Detected",
    17: "Internal Failure",
    21: "The initiator is not allowed to initiate this request.",
    26: "Traffic blocking condition in place",
    2001: "The initiator information is invalid.",
    2006: "Declined due to account rule: The account status does not allow this transaction.",
    2028: "The request is not permitted according to product assignment.",
    2040: (
        "Credit Party customer type (Unregistered or Registered Customer) can't be supported by the service."
    ),
    8006: "The security credential is locked.",
    "SFC_IC0003": "The operator does not exist.",
}

# Reversal's refusals (inferred: the public page lists no codes; these are the ones integrators
# report). A receipt that is no C2B payment of the receiver (unknown, a B2C, another shortcode's)
# is R000002; a payment already reversed (or being reversed) is R000001.
REVERSAL_RESULTS: dict[int | str, str] = {
    0: SUCCESS_DESC,
    "R000001": "The transaction has already been reversed.",
    "R000002": "The OriginalTransID is invalid.",
    "R000003": "The reversal amount is not the original transaction's amount.",
    1: "The balance is insufficient for the transaction.",
    21: B2C_RESULTS[21],
    2001: B2C_RESULTS[2001],
}

QUEUE_TIMEOUT_DESC = "The service request timed out."
STATUS_NOT_FOUND_DESC = "The transaction could not be found."


def parse_code(value: object) -> int | str:
    """Result codes are ints except the odd `SFC_IC0003`."""
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text
