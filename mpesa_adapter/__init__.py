"""M-Pesa (Safaricom Daraja) integration: the Daraja client, the callback endpoints and, in
`mpesa_adapter.simulator`, a faithful Daraja simulator."""
