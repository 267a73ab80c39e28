from __future__ import annotations

from datetime import datetime

import pytest

from domain.user.errors import (
    InvalidDerivLoginId,
    InvalidEmail,
    InvalidPhoneNumber,
    NotMpesaPhone,
    VirtualAccountRefused,
)
from domain.user.value_objects import DerivLoginId, Email, KycSnapshot, PasswordHash, PhoneNumber

pytestmark = pytest.mark.unit


def test_email_is_stored_lower_case_and_trimmed() -> None:
    assert Email("  Wanjiru.K@Example.CO.KE ").value == "wanjiru.k@example.co.ke"


@pytest.mark.parametrize(
    "text", ["", "no-at-sign", "a@b", "a@@b.com", "a b@c.com", "a@-b.com", "x" * 65 + "@a.com"]
)
def test_bad_emails_are_refused(text: str) -> None:
    with pytest.raises(InvalidEmail):
        Email(text)


@pytest.mark.parametrize("text", ["+254712345678", "254712345678", " +254712345678 "])
def test_phone_is_stored_as_e164_digits(text: str) -> None:
    phone = PhoneNumber(text)
    assert phone.value == "254712345678"
    assert phone.e164 == "+254712345678"


@pytest.mark.parametrize(
    "text", ["0712345678", "+1", "abc", "+254 712 345 678", "+0254712345678", "1234567890123456"]
)
def test_non_e164_phones_are_refused(text: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        PhoneNumber(text)


@pytest.mark.parametrize(
    ("text", "mpesa"),
    [
        ("254712345678", True),
        ("254110345678", True),
        ("254212345678", False),
        ("14155550123", False),
        ("2547123456789", False),
    ],
)
def test_mpesa_kenya_lines(text: str, mpesa: bool) -> None:
    assert PhoneNumber(text).is_mpesa_kenya is mpesa


def test_mpesa_constructor_requires_a_kenyan_line() -> None:
    assert PhoneNumber.mpesa("+254712345678").is_mpesa_kenya
    with pytest.raises(NotMpesaPhone):
        PhoneNumber.mpesa("+14155550123")


def test_phone_is_masked_in_logs() -> None:
    phone = PhoneNumber("254712345678")
    assert phone.masked() == "254******678"
    assert "712345" not in repr(phone)


def test_deriv_login_id_is_upper_cased() -> None:
    assert DerivLoginId("cr123456").value == "CR123456"


@pytest.mark.parametrize("text", ["", "123", "CR", "CR-123", "12CR", "CR12a"])
def test_bad_deriv_login_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidDerivLoginId):
        DerivLoginId(text)


@pytest.mark.parametrize(
    ("text", "virtual"), [("VRTC123", True), ("VRW9", True), ("CR123", False), ("MF1", False)]
)
def test_virtual_accounts_are_recognised(text: str, virtual: bool) -> None:
    assert DerivLoginId(text).is_virtual is virtual


def test_demo_accounts_cannot_move_real_money() -> None:
    with pytest.raises(VirtualAccountRefused):
        DerivLoginId("VRTC123").require_real_money()


def test_password_hash_is_hidden_from_repr() -> None:
    secret = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"
    assert secret not in repr(PasswordHash(secret))
    assert secret not in str(PasswordHash(secret))


def test_kyc_snapshot_from_get_settings(now: datetime) -> None:
    settings: dict[str, object] = {
        "first_name": "Wanjiru",
        "last_name": "Kamau",
        "date_of_birth": 631152000,
        "citizen": "KE",
        "residence": "ke",
        "address_line_1": "1 Moi Avenue",
        "address_city": "Nairobi",
        "tax_identification_number": "A123",
        "email": "w@example.com",
        "phone": "+254712345678",
        "unrelated": [1, 2],
    }
    snapshot = KycSnapshot.from_get_settings(settings, now)
    assert snapshot.citizen == "ke"
    assert snapshot.date_of_birth == 631152000
    assert snapshot.is_acceptable()
    assert "A123" not in repr(snapshot)
    assert "Moi Avenue" not in repr(snapshot)


def test_kyc_without_birth_date_is_not_acceptable(now: datetime) -> None:
    snapshot = KycSnapshot.from_get_settings({"first_name": "A", "last_name": "B", "residence": "ke"}, now)
    assert not snapshot.is_acceptable()
    assert snapshot.missing_for_payments() == ("date_of_birth",)
