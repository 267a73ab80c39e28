"""Result-set metadata parsed once per distinct column, not once per result (aiomysql).

MariaDB's text protocol sends a column-definition packet for every column of every result set,
and aiomysql parses each in pure Python (PyMySQL's FieldDescriptorPacket: six length-coded
strings and a struct per column). Our statements repeat, so the packets repeat byte for byte:
profiled in the saga workers (bench e2e), that parsing was the largest single item of their CPU
(about 90,000 column packets for 3,600 result sets). install() replaces aiomysql's
MySQLResult._get_descriptions with the same loop that keeps each packet's parsed form, keyed by
its bytes and the connection's encoding (all the parse depends on). The packets are still read
through aiomysql's own _read_packet (sequence numbers, error packets, lost connections as before);
the per-column encoding and converter are still chosen per connection, as aiomysql does.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from aiomysql import connection as _aiomysql
from pymysql.connections import TEXT_TYPES
from pymysql.constants import FIELD_TYPE
from pymysql.converters import through
from pymysql.protocol import FieldDescriptorPacket, MysqlPacket

# The internals this mirrors are aiomysql 0.3's (MySQLResult._get_descriptions); another version
# keeps its own loop.
SUPPORTED = version("aiomysql").startswith("0.3.")
# Distinct columns of every statement we send is a few hundred; a bound all the same, so a stream of
# ad-hoc statements (a console) cannot grow it without end.
MAX_ENTRIES = 4096

_parsed: dict[tuple[bytes, str], tuple[FieldDescriptorPacket, tuple[Any, ...]]] = {}
_installed = False
LIBRARY_GET_DESCRIPTIONS = _aiomysql.MySQLResult._get_descriptions  # aiomysql's own, for comparison


def _field(data: bytes, encoding: str) -> tuple[FieldDescriptorPacket, tuple[Any, ...]]:
    key = (data, encoding)
    found = _parsed.get(key)
    if found is None:
        if len(_parsed) >= MAX_ENTRIES:
            _parsed.clear()
        field = FieldDescriptorPacket(data, encoding)
        found = _parsed[key] = (field, field.description())
    return found


async def _get_descriptions(self: Any) -> None:
    """aiomysql 0.3's MySQLResult._get_descriptions, the column packets parsed once (see above)."""
    connection = self.connection
    self.fields = []
    self.converters = []
    use_unicode = connection.use_unicode
    conn_encoding = connection.encoding
    packet_encoding = connection._encoding
    decoders = connection.decoders
    description = []
    for _ in range(self.field_count):
        packet = await connection._read_packet(MysqlPacket)
        field, field_description = _field(packet.get_all_data(), packet_encoding)
        self.fields.append(field)
        description.append(field_description)
        field_type = field.type_code
        encoding: str | None
        if use_unicode:
            if field_type == FIELD_TYPE.JSON:
                encoding = conn_encoding  # JSON comes in the connection's encoding, as aiomysql
            elif field_type in TEXT_TYPES:
                encoding = None if field.charsetnr == 63 else conn_encoding  # 63: binary
            else:
                encoding = "ascii"
        else:
            encoding = None
        converter = decoders.get(field_type)
        if converter is through:
            converter = None
        self.converters.append((encoding, converter))
    eof_packet = await connection._read_packet()
    assert eof_packet.is_eof_packet(), "Protocol error, expecting EOF"  # as aiomysql checks it
    self.description = tuple(description)


def install() -> bool:
    """Use the parsed-once descriptions in every aiomysql connection of this process (idempotent);
    False when this aiomysql is not the version they mirror."""
    global _installed
    if not SUPPORTED:
        return False
    if not _installed:
        _aiomysql.MySQLResult._get_descriptions = _get_descriptions
        _installed = True
    return True
