"""SMS delivery: the Africa's Talking adapter (behind application.identity.ports.Notifier's
send_sms) and `sms_adapter.simulator`, a simulator of its messaging API (`penpay sim sms`)."""
