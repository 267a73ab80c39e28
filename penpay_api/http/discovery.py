"""Which services to bridge by default: every `penpay.<name>.v1.<X>Service` with http rules.

The generated packages are imported (their *_pb2 modules register the descriptors); a package that
does not exist yet is skipped, but a generated module that fails to import is an error.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable

from penpay_api.http.rules import http_bindings

DEFAULT_PACKAGES = (
    "penpay.auth.v1",
    "penpay.payments.v1",
    "penpay.wallet.v1",
    "penpay.ops.v1",
    "penpay.keys.v1",
)
DEV_PACKAGE = "penpay.dev.v1"  # the development sinks: never bridged in production
SERVICE_NAME = re.compile(r"penpay\.[a-z0-9_]+\.v1\.[A-Za-z0-9_]*Service")


def packages_for(app_env: str) -> tuple[str, ...]:
    return DEFAULT_PACKAGES if app_env == "production" else (*DEFAULT_PACKAGES, DEV_PACKAGE)


def _missing(exc: ModuleNotFoundError, package: str) -> bool:
    parts = package.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return exc.name in prefixes


def discover_services(packages: Iterable[str] = DEFAULT_PACKAGES) -> list[str]:
    found: list[str] = []
    for package_name in packages:
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError as exc:
            if _missing(exc, package_name):
                continue
            raise
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not info.name.endswith("_pb2"):
                continue
            module = importlib.import_module(f"{package_name}.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                if not SERVICE_NAME.fullmatch(service.full_name):
                    continue
                if any(http_bindings(m) for m in service.methods) and service.full_name not in found:
                    found.append(service.full_name)
    return found
