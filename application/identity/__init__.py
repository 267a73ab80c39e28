"""Identity use cases (PEC 2.1): registration, login with devices, tokens, phone and email
verification, Deriv binding and KYC snapshots, and the KYC/AML policy payments call."""
