"""Environment reading shared by the security adapters.

Settings are read from the environment with defaults (they are not yet in penpay.settings):
development defaults exist only when the environment is not production.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def app_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get("PENPAY_APP_ENV") or env.get("APP_ENV") or "development").strip().lower()


def is_production(env: Mapping[str, str] | None = None) -> bool:
    return app_env(env) == "production"


class MissingSecret(RuntimeError):
    """A secret that has no development default in production."""
