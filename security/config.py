"""What the security adapters share about configuration.

They read no environment: penpay/settings.py holds every setting and the composition root
(penpay/bootstrap.py) hands them the values.
"""

from __future__ import annotations


class MissingSecret(RuntimeError):
    """A secret that has no development default in production; the message names its setting."""
