"""Copy the browser assets the ops console and /docs serve from node_modules (npm packages pinned in
package.json) into `penpay_api/console/static/vendor/` (part of the build, never committed).

setup.sh runs it for the checkout; setup.py's build hook runs `vendor(build_lib)` so a wheel carries
them. A missing package runs `npm install` from package.json first (the npm registry or npm's cache).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path("penpay_api") / "console" / "static" / "vendor"
# node_modules path -> name under vendor/
ASSETS = {
    "htmx.org/dist/htmx.min.js": "htmx.min.js",
    "swagger-ui-dist/swagger-ui-bundle.js": "swagger-ui-bundle.js",
    "swagger-ui-dist/swagger-ui.css": "swagger-ui.css",
}
# Used by the browser tests only (injected into the page under test), not shipped.
TEST_ASSETS = {"axe-core/axe.min.js": "axe.min.js"}


def _ensure_node_modules(root: Path) -> Path:
    modules = root / "node_modules"
    if all((modules / source).is_file() for source in ASSETS):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("vendor_assets: node_modules is incomplete and npm is not installed")
    # No lock file: the exact pins are in package.json (as scripts/setup.sh installs buf).
    subprocess.run(  # noqa: S603 - npm from PATH with fixed arguments
        [npm, "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return modules


def vendor(out: Path = ROOT, root: Path = ROOT) -> Path:
    """Copy the assets into `out`/penpay_api/console/static/vendor; returns that directory."""
    modules = _ensure_node_modules(root)
    target = out / TARGET
    target.mkdir(parents=True, exist_ok=True)
    for source, name in ASSETS.items():
        shutil.copyfile(modules / source, target / name)
    return target


def main() -> int:
    print(f"vendored into {vendor()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
