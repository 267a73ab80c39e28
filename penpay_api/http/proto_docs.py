"""The comments of the .proto files, by full name, for the OpenAPI document's descriptions.

Generated Python modules keep no comments; scripts/gen_protos.py writes a descriptor set with source
info next to them (`penpay/proto_docs.binpb`, part of the build like the modules). Names are
"pkg.Message", "pkg.Message.field", "pkg.Enum", "pkg.Enum.VALUE", "pkg.Service",
"pkg.Service.Method". Without the file (a tree not generated yet) there are simply no descriptions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import descriptor_pb2

# FileDescriptorProto field numbers in SourceCodeInfo paths (descriptor.proto).
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM = 2, 3, 4
_ENUM_VALUE, _METHOD = 2, 2


def _clean(comment: str) -> str:
    lines = [line.strip() for line in comment.strip().splitlines()]
    return " ".join(line for line in lines if line)


def _walk_message(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    message: descriptor_pb2.DescriptorProto,
    scope: str,
) -> None:
    name = f"{scope}.{message.name}"
    names[path] = name
    for i, field in enumerate(message.field):
        names[(*path, _FIELD, i)] = f"{name}.{field.name}"
    for i, nested in enumerate(message.nested_type):
        _walk_message(names, (*path, _NESTED, i), nested, name)
    for i, enum in enumerate(message.enum_type):
        _walk_enum(names, (*path, _NESTED_ENUM, i), enum, name)


def _walk_enum(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    enum: descriptor_pb2.EnumDescriptorProto,
    scope: str,
) -> None:
    name = f"{scope}.{enum.name}"
    names[path] = name
    for i, value in enumerate(enum.value):
        names[(*path, _ENUM_VALUE, i)] = f"{name}.{value.name}"


def comments_of(files: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    docs: dict[str, str] = {}
    for file in files.file:
        names: dict[tuple[int, ...], str] = {}
        for i, message in enumerate(file.message_type):
            _walk_message(names, (_MESSAGE, i), message, file.package)
        for i, enum in enumerate(file.enum_type):
            _walk_enum(names, (_ENUM, i), enum, file.package)
        for i, service in enumerate(file.service):
            service_name = f"{file.package}.{service.name}"
            names[(_SERVICE, i)] = service_name
            for j, method in enumerate(service.method):
                names[(_SERVICE, i, _METHOD, j)] = f"{service_name}.{method.name}"
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = _clean(location.leading_comments or location.trailing_comments)
            if name is not None and text:
                docs[name] = text
    return docs


def default_path() -> Path:
    # Generated beside the contracts' modules (penpay/<service>/v1/...): found from one of them, so
    # this adapter depends on the contracts, never on the composition root's package.
    from penpay.common.v1 import money_pb2

    return Path(money_pb2.__file__).resolve().parents[2] / "proto_docs.binpb"


@functools.cache
def load(path: Path | None = None) -> Mapping[str, str]:
    source = path or default_path()
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        return {}
    return comments_of(descriptor_pb2.FileDescriptorSet.FromString(data))
