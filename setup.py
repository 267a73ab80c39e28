"""Build hook: a wheel carries what the installed `penpay` needs beyond the Python sources.

- The protobuf/gRPC modules `penpay/<service>/v1/*_pb2*.py`, generated from protos/ at build time
  (scripts/gen_protos.py): generated code is produced by the build, never committed, so a wheel
  built from a clean tree has them and they always match protos/.
- Alembic's `alembic.ini` and `migrations/` under `persistence/_migrations/`, where
  persistence/migrate.py looks first: `penpay migrate` works from any directory.
- The ops console's browser assets (htmx, Swagger UI) under `penpay_api/console/static/vendor/`,
  copied from the npm packages of package.json (scripts/vendor_assets.py), never committed.

An editable install (scripts/setup.sh) skips both: the checkout generates in place and
persistence/migrate.py finds alembic.ini at the repository root.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _load(name: str):  # a script of scripts/ as a module (they are not part of the package)
    spec = importlib.util.spec_from_file_location(f"_penpay_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithGenerated(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        out = Path(self.build_lib)
        gen = _load("gen_protos")
        with tempfile.TemporaryDirectory() as deps:
            if gen.generate(out, Path(deps)) != 0:
                raise SystemExit("protoc failed: see above")
        target = out / "persistence" / "_migrations"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            ROOT / "migrations", target / "migrations", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        shutil.copyfile(ROOT / "alembic.ini", target / "alembic.ini")
        _load("vendor_assets").vendor(out, ROOT)


setup(cmdclass={"build_py": BuildPyWithGenerated})
