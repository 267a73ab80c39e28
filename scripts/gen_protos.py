"""Generate Python code from protos/ with grpcio-tools (part of the build, never committed).

Output goes next to the hand-written `penpay` package as `penpay/<service>/v1/*_pb2*.py` (in the
checkout; `setup.py` calls `generate(build_lib)` so a wheel carries them too). The google/api/*.proto
imports come from the googleapis-common-protos wheel and are also copied to build/proto-deps so
`buf lint` resolves them without any remote registry.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
DEPS = ROOT / "build" / "proto-deps"
GOOGLE_API_FILES = ("annotations.proto", "http.proto", "field_behavior.proto")
GOOGLE_RPC_FILES = ("status.proto", "error_details.proto", "code.proto")
DOCS_FILE = Path("penpay") / "proto_docs.binpb"


def copy_google_protos(deps: Path = DEPS) -> Path:
    import google.api
    import google.rpc

    for package, names in ((google.api, GOOGLE_API_FILES), (google.rpc, GOOGLE_RPC_FILES)):
        source = Path(package.__path__[0])
        target = deps / "google" / source.name
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(source / name, target / name)
    return deps


def generate(out: Path = ROOT, deps: Path = DEPS) -> int:
    """protoc for every protos/**/*.proto into `out` (a tree holding the `penpay` package)."""
    deps = copy_google_protos(deps)
    (out / DOCS_FILE).parent.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    if not files:
        print("no .proto files under protos/", file=sys.stderr)
        return 1
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{deps}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        # The proto comments (source info) for the OpenAPI document's descriptions
        # (penpay_api/http/proto_docs.py); the Python modules do not keep them.
        f"--descriptor_set_out={out / DOCS_FILE}",
        "--include_source_info",
        *files,
    ]
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
    return int(code)


def main() -> int:
    return generate()


if __name__ == "__main__":
    sys.exit(main())
