"""The review queue: operators' four-eyes actions on transactions that need a person."""
