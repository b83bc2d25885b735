"""A strict DER reader and writer, and combinators to describe a grammar.

albatross speaks DER through asn1-combinators; this module reproduces the
rules that fix its exact bytes (spec section 3.2) and its strictness:

* definite, minimal lengths only (no long form where the short fits, no
  leading zero length octets, no indefinite length);
* INTEGER minimal two's complement, at most 8 octets, within OCaml's 63-bit
  ``int``;
* BOOLEAN written ``FF``/``00``, any non-zero octet read as true;
* SET OF sorted by element encoding on write (byte-wise, shorter first on a
  common prefix), order kept on read;
* GeneralizedTime ``YYYYMMDDHHMMSS[.fff]Z``, milliseconds only when the
  sub-second part is non-zero;
* ``Int64`` is not an INTEGER but an 8-octet OCTET STRING, big-endian;
* no trailing bytes after the top-level value.

asn1crypto's parser accepts non-minimal lengths and integers, which albatross
rejects, so reading is done here; asn1crypto serves the X.509 side.

A grammar is built from :class:`Schema` objects.  Each knows its possible
first tag octets (for CHOICE and OPTIONAL dispatch), how to encode a Python
value and how to decode one TLV.  Every failure is a :class:`WireError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from albatross_py.wire.errors import WireError

#: Deepest nesting of constructed values the reader follows.  albatross's
#: deepest message (statistics in a reply) nests about 10 levels; 32 leaves
#: room for every grammar alternative while stopping hostile nesting early.
MAX_DEPTH = 32

#: OCaml's ``int`` is 63 bits: albatross rejects INTEGERs outside it.
INT_MIN = -(2**62)
INT_MAX = 2**62 - 1

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_UTF8STRING = 0x0C
TAG_GENERALIZED_TIME = 0x18
TAG_SEQUENCE = 0x30
TAG_SET = 0x31

_TAG_NAMES = {
    TAG_BOOLEAN: "BOOLEAN",
    TAG_INTEGER: "INTEGER",
    TAG_OCTET_STRING: "OCTET STRING",
    TAG_NULL: "NULL",
    TAG_UTF8STRING: "UTF8String",
    TAG_GENERALIZED_TIME: "GeneralizedTime",
    TAG_SEQUENCE: "SEQUENCE",
    TAG_SET: "SET",
}


def tag_name(tag: int) -> str:
    if tag in _TAG_NAMES:
        return _TAG_NAMES[tag]
    if tag & 0xE0 == 0xA0:
        return f"[{tag & 0x1F}]"
    if tag & 0xE0 == 0x80:
        return f"[{tag & 0x1F}] primitive"
    return f"tag 0x{tag:02X}"


# -- TLV layer ------------------------------------------------------------


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


Parts = list[bytes]


def tlv_parts(tag: int, content: Parts) -> Parts:
    """A TLV as a list of chunks: the header is prepended, no content is copied."""
    return [bytes([tag]) + encode_length(sum(map(len, content))), *content]


def read_tlv(data: memoryview, pos: int) -> tuple[int, memoryview, int]:
    """Read one TLV at ``pos``: (tag, content, position after it)."""
    end = len(data)
    # fast path: low tag number, short-form length (nearly every value)
    if pos + 2 <= end:
        tag, first = data[pos], data[pos + 1]
        if first < 0x80 and tag & 0x1F != 0x1F:
            stop = pos + 2 + first
            if stop <= end:
                return tag, data[pos + 2 : stop], stop
    if pos >= end:
        raise WireError("unexpected end of data: expected a value")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise WireError(f"unsupported high tag number form (0x{tag:02X})")
    pos += 1
    if pos >= end:
        raise WireError(f"unexpected end of data in the length of {tag_name(tag)}")
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise WireError(f"indefinite length is not DER ({tag_name(tag)})")
    else:
        count = first & 0x7F
        if count > 4:
            raise WireError(f"length of {tag_name(tag)} uses {count} octets (at most 4)")
        if pos + count > end:
            raise WireError(f"unexpected end of data in the length of {tag_name(tag)}")
        raw = bytes(data[pos : pos + count])
        pos += count
        if raw[0] == 0:
            raise WireError(f"length of {tag_name(tag)} has a leading zero octet")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise WireError(f"length of {tag_name(tag)} is in long form where short fits")
    if pos + length > end:
        raise WireError(f"{tag_name(tag)} claims {length} bytes, only {end - pos} remain")
    return tag, data[pos : pos + length], pos + length


# -- schemas ----------------------------------------------------------------


class Schema:
    """One piece of grammar: encodes a Python value, decodes one TLV."""

    #: the first octets this schema's encoding may start with
    tags: frozenset[int] = frozenset()

    def encode(self, value: Any) -> bytes:
        return b"".join(self.parts(value))

    def parts(self, value: Any) -> Parts:
        """The encoding as chunks; joined once at the top, so large octet
        strings (images) are copied once while encoding, not once per level."""
        raise NotImplementedError  # abstract: every concrete schema overrides it

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> Any:
        raise NotImplementedError  # abstract: every concrete schema overrides it

    def expect(self, tag: int) -> None:
        if tag not in self.tags:
            want = " or ".join(sorted(tag_name(t) for t in self.tags))
            raise WireError(f"expected {want}, found {tag_name(tag)}")


class _Primitive(Schema):
    tag: int

    def __init__(self) -> None:
        self.tags = frozenset({self.tag})

    def parts(self, value: Any) -> Parts:
        content = self.encode_content(value)
        return [bytes([self.tag]) + encode_length(len(content)), content]

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> Any:
        if tag != self.tag:
            self.expect(tag)
        return self.decode_content(bytes(content))

    def encode_content(self, value: Any) -> bytes:
        raise NotImplementedError  # abstract

    def decode_content(self, content: bytes) -> Any:
        raise NotImplementedError  # abstract


class Integer(_Primitive):
    tag = TAG_INTEGER

    def encode_content(self, value: int) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireError(f"INTEGER needs an int, got {type(value).__name__}")
        if not INT_MIN <= value <= INT_MAX:
            raise WireError(f"INTEGER {value} does not fit 63 bits")
        # minimal two's complement: one sign bit more than the magnitude needs
        bits = value.bit_length() if value >= 0 else (~value).bit_length()
        return value.to_bytes(bits // 8 + 1, "big", signed=True)

    def decode_content(self, content: bytes) -> int:
        if not content:
            raise WireError("INTEGER with no content octets")
        if len(content) > 8:
            raise WireError(f"INTEGER of {len(content)} octets is too large")
        if len(content) > 1 and (
            (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
        ):
            raise WireError("INTEGER is not minimally encoded")
        value = int.from_bytes(content, "big", signed=True)
        if not INT_MIN <= value <= INT_MAX:
            raise WireError(f"INTEGER {value} does not fit 63 bits")
        return value


class Boolean(_Primitive):
    tag = TAG_BOOLEAN

    def encode_content(self, value: bool) -> bytes:
        return b"\xff" if value else b"\x00"

    def decode_content(self, content: bytes) -> bool:
        if len(content) != 1:
            raise WireError(f"BOOLEAN of {len(content)} octets (must be 1)")
        return content != b"\x00"


class Null(_Primitive):
    tag = TAG_NULL

    def encode_content(self, value: Any) -> bytes:
        return b""

    def decode_content(self, content: bytes) -> None:
        if content:
            raise WireError("NULL with content octets")
        return None


class OctetString(_Primitive):
    tag = TAG_OCTET_STRING

    def encode_content(self, value: bytes) -> bytes:
        return bytes(value)

    def decode_content(self, content: bytes) -> bytes:
        return content


class FixedOctets(OctetString):
    """An OCTET STRING of an exact size (MAC addresses)."""

    def __init__(self, size: int, what: str) -> None:
        super().__init__()
        self.size, self.what = size, what

    def encode_content(self, value: bytes) -> bytes:
        if len(value) != self.size:
            raise WireError(f"{self.what} must be {self.size} octets, got {len(value)}")
        return bytes(value)

    def decode_content(self, content: bytes) -> bytes:
        if len(content) != self.size:
            raise WireError(f"{self.what} must be {self.size} octets, got {len(content)}")
        return content


class Int64(OctetString):
    """albatross's ``int64``: an 8-octet OCTET STRING, big-endian signed.

    albatross reads the first 8 octets and raises an exception on fewer; we
    require exactly 8 and say so (albatross's own encoder writes exactly 8).
    """

    def encode_content(self, value: int) -> bytes:
        if not -(2**63) <= value < 2**63:
            raise WireError(f"Int64 {value} out of range")
        return value.to_bytes(8, "big", signed=True)

    def decode_content(self, content: bytes) -> int:
        if len(content) != 8:
            raise WireError(f"Int64 must be 8 octets, got {len(content)}")
        return int.from_bytes(content, "big", signed=True)


class Utf8(_Primitive):
    """UTF8String as ``str``; not validated, arbitrary bytes survive."""

    tag = TAG_UTF8STRING

    def encode_content(self, value: str) -> bytes:
        return value.encode("utf-8", "surrogateescape")

    def decode_content(self, content: bytes) -> str:
        return content.decode("utf-8", "surrogateescape")


class Utf8Bytes(Utf8):
    """UTF8String kept as raw bytes (console lines)."""

    def encode_content(self, value: bytes) -> bytes:
        return bytes(value)

    def decode_content(self, content: bytes) -> bytes:  # type: ignore[override]
        return content


_GT_RE = re.compile(
    rb"(\d{4})(\d{2})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{4})\Z"
)


class GeneralizedTime(_Primitive):
    """GeneralizedTime in UTC, with milliseconds only when non-zero."""

    tag = TAG_GENERALIZED_TIME

    def encode_content(self, value: datetime) -> bytes:
        if value.tzinfo is None:
            raise WireError("GeneralizedTime needs an aware datetime")
        v = value.astimezone(UTC)
        s = v.strftime("%Y%m%d%H%M%S")
        if v.microsecond:
            s += f".{v.microsecond // 1000:03d}"
        return (s + "Z").encode()

    def decode_content(self, content: bytes) -> datetime:
        m = _GT_RE.match(content)
        if not m:
            raise WireError(f"malformed GeneralizedTime {content!r}")
        year, month, day, hour, minute, second, frac, zone = m.groups()
        try:
            dt = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute or 0),
                int(second or 0),
                int((frac or b"0").ljust(6, b"0")[:6]),
                tzinfo=UTC,
            )
        except ValueError as exc:
            raise WireError(f"invalid GeneralizedTime {content!r}: {exc}") from None
        if zone != b"Z":
            sign = 1 if zone[:1] == b"+" else -1
            dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        return dt


class Explicit(Schema):
    """``[n] EXPLICIT inner`` (context-specific, constructed)."""

    def __init__(self, n: int, inner: Schema) -> None:
        if not 0 <= n < 31:
            raise ValueError("only low tag numbers")
        self.n, self.inner = n, inner
        self.tags = frozenset({0xA0 | n})

    def parts(self, value: Any) -> Parts:
        return tlv_parts(0xA0 | self.n, self.inner.parts(value))

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> Any:
        self.expect(tag)
        return decode_exact(self.inner, content, depth + 1, f"[{self.n}]")


class Field:
    """A SEQUENCE component; ``optional`` ones may be absent (None)."""

    __slots__ = ("name", "optional", "schema")

    def __init__(self, name: str, schema: Schema, optional: bool = False) -> None:
        self.name, self.schema, self.optional = name, schema, optional


class Sequence_(Schema):
    """SEQUENCE of fields; the value is a dict keyed by field name.

    ``tag`` lets the same shape appear IMPLICIT-tagged (kinfo-mem [1]).
    """

    def __init__(self, fields: Sequence[Field], tag: int = TAG_SEQUENCE) -> None:
        self.fields = list(fields)
        self.tag = tag
        self.tags = frozenset({tag})

    def parts(self, value: dict[str, Any]) -> Parts:
        parts: Parts = []
        for f in self.fields:
            v = value.get(f.name)
            if v is None:
                if f.optional:
                    continue
                raise WireError(f"missing field {f.name}")
            parts += f.schema.parts(v)
        return tlv_parts(self.tag, parts)

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> dict[str, Any]:
        if tag != self.tag:
            self.expect(tag)
        if depth > MAX_DEPTH:
            check_depth(depth)
        out: dict[str, Any] = {}
        pos, end = 0, len(content)
        depth += 1
        for f in self.fields:
            if pos >= end:
                if not f.optional:
                    raise WireError(f"SEQUENCE ends before field {f.name}")
                out[f.name] = None
                continue
            t, c, nxt = read_tlv(content, pos)
            schema = f.schema
            if f.optional and t not in schema.tags:
                out[f.name] = None
                continue
            out[f.name] = schema.decode_tlv(t, c, depth)
            pos = nxt
        if pos != end:
            t, _, _ = read_tlv(content, pos)
            raise WireError(f"unexpected {tag_name(t)} at the end of a SEQUENCE")
        return out


class SequenceOf(Schema):
    """SEQUENCE OF (``sort=False``) or SET OF (``sort=True``); value a list."""

    def __init__(self, inner: Schema, set_of: bool = False) -> None:
        self.inner = inner
        self.set_of = set_of
        self.tags = frozenset({TAG_SET if set_of else TAG_SEQUENCE})

    def parts(self, value: Iterable[Any]) -> Parts:
        tag = TAG_SET if self.set_of else TAG_SEQUENCE
        if self.set_of:
            items = sorted(self.inner.encode(v) for v in value)
            # bytes order is DER's: byte-wise, shorter first on a common prefix
            return tlv_parts(tag, items)
        parts: Parts = []
        for v in value:
            parts += self.inner.parts(v)
        return tlv_parts(tag, parts)

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> list[Any]:
        self.expect(tag)
        check_depth(depth)
        out = []
        pos, end = 0, len(content)
        while pos < end:
            t, c, pos = read_tlv(content, pos)
            out.append(self.inner.decode_tlv(t, c, depth + 1))
        return out


def SetOf(inner: Schema) -> SequenceOf:
    return SequenceOf(inner, set_of=True)


class Choice(Schema):
    """CHOICE of explicitly tagged alternatives, flattened as albatross does.

    ``alternatives`` maps tag number to (alternative name, schema).  The
    value is ``(alternative name, inner value)``.
    """

    def __init__(self, what: str, alternatives: dict[int, tuple[str, Schema]]) -> None:
        self.what = what
        self.by_tag = {0xA0 | n: (name, Explicit(n, s)) for n, (name, s) in alternatives.items()}
        self.by_name = {name: sch for name, sch in self.by_tag.values()}
        self.tags = frozenset(self.by_tag)

    def parts(self, value: tuple[str, Any]) -> Parts:
        name, inner = value
        try:
            schema = self.by_name[name]
        except KeyError:
            raise WireError(f"{self.what}: no alternative {name!r}") from None
        return schema.parts(inner)

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> tuple[str, Any]:
        try:
            name, schema = self.by_tag[tag]
        except KeyError:
            raise WireError(f"{self.what}: unknown tag {tag_name(tag)}") from None
        return name, schema.decode_tlv(tag, content, depth)


class Map(Schema):
    """Wrap a schema with conversions to and from a richer Python type.

    ``decode`` may raise ValueError (e.g. an invalid label), which becomes a
    :class:`WireError` naming ``what``.
    """

    def __init__(
        self,
        inner: Schema,
        decode: Callable[[Any], Any],
        encode: Callable[[Any], Any],
        what: str = "value",
    ) -> None:
        self.inner, self._dec, self._enc, self.what = inner, decode, encode, what
        self.tags = inner.tags

    def parts(self, value: Any) -> Parts:
        return self.inner.parts(self._enc(value))

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> Any:
        raw = self.inner.decode_tlv(tag, content, depth)
        try:
            return self._dec(raw)
        except WireError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise WireError(f"invalid {self.what}: {exc}") from None


class Lazy(Schema):
    """A schema resolved on first use (for mutually referring grammar parts)."""

    def __init__(self, thunk: Callable[[], Schema]) -> None:
        self._thunk = thunk
        self._schema: Schema | None = None

    @property
    def schema(self) -> Schema:
        if self._schema is None:
            self._schema = self._thunk()
        return self._schema

    @property
    def tags(self) -> frozenset[int]:  # type: ignore[override]
        return self.schema.tags

    def parts(self, value: Any) -> Parts:
        return self.schema.parts(value)

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> Any:
        return self.schema.decode_tlv(tag, content, depth)


# -- entry points -----------------------------------------------------------


def check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"values nested deeper than {MAX_DEPTH} levels")


def decode_exact(schema: Schema, data: bytes | memoryview, depth: int = 0, where: str = "") -> Any:
    """Decode exactly one value filling ``data``; trailing bytes are an error."""
    check_depth(depth)
    view = data if isinstance(data, memoryview) else memoryview(data)
    tag, content, pos = read_tlv(view, 0)
    value = schema.decode_tlv(tag, content, depth + 1)
    if pos != len(view):
        extra = len(view) - pos
        raise WireError(f"{extra} trailing bytes after the value{' in ' + where if where else ''}")
    return value


def decode(schema: Schema, data: bytes) -> Any:
    return decode_exact(schema, data)


def encode(schema: Schema, value: Any) -> bytes:
    return schema.encode(value)
