"""M-Pesa (Safaricom Daraja) integration: the adapter and, in `mpesa_adapter.simulator`, a faithful Daraja simulator."""
