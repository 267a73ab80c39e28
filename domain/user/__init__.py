"""Identity context (PEC 2.1): users, their contacts, devices, Deriv binding and KYC."""
