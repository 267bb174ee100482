"""Codecs turn values into bytes and back. Only the outermost layers use them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec


class CodecError(ValueError):
    """Bytes that do not decode to the expected type; the message says why."""


class Codec(Protocol):
    """Turns one kind of value into bytes and back."""

    name: str

    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...
    def loads_many(self, items: Sequence[bytes | None]) -> list[Any]:
        """Decode a batch (None stays None); raises CodecError if any item is bad."""
        ...


class RawCodec:
    """Bytes in, bytes out."""

    name = "raw"

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise CodecError(f"raw codec sends bytes; got {type(value).__name__} (use value_type=str or a Record)")

    def loads(self, data: bytes) -> Any:
        return data

    def loads_many(self, items: Sequence[bytes | None]) -> list[Any]:
        return list(items)


class StrCodec:
    """UTF-8 text."""

    name = "str"

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, str):
            return value.encode()
        raise CodecError(f"str codec sends str; got {type(value).__name__}")

    def loads(self, data: bytes) -> Any:
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise CodecError(f"not UTF-8 text: {exc}") from None

    def loads_many(self, items: Sequence[bytes | None]) -> list[Any]:
        return [None if item is None else self.loads(item) for item in items]


class JsonCodec:
    """JSON via msgspec, decoding straight into ``type_`` (a Record, dict, list, ...)."""

    name = "json"

    def __init__(self, type_: Any = Any) -> None:
        self.type = type_
        self._encoder = msgspec.json.Encoder()
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(type_)

    def dumps(self, value: Any) -> bytes:
        try:
            return self._encoder.encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise CodecError(f"cannot encode {type(value).__name__} as JSON: {exc}") from None

    def loads(self, data: bytes) -> Any:
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise CodecError(f"JSON does not match {_type_name(self.type)}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise CodecError(f"malformed JSON: {exc}") from None

    def loads_many(self, items: Sequence[bytes | None]) -> list[Any]:
        decode = self._decoder.decode
        try:
            return [None if item is None else decode(item) for item in items]
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise CodecError(str(exc)) from None


def _type_name(type_: Any) -> str:
    return getattr(type_, "__name__", repr(type_))


def codec_for(type_: Any, serializer: str | Codec | None = None) -> Codec:
    """The codec for a declared key/value type, or the one named by ``serializer``."""
    if serializer is not None and not isinstance(serializer, str):
        return serializer
    if serializer == "raw" or (serializer is None and type_ is bytes):
        return RawCodec()
    if serializer == "str" or (serializer is None and type_ is str):
        return StrCodec()
    if serializer in (None, "json"):
        return JsonCodec(Any if type_ is None else type_)
    raise ValueError(f"unknown serializer {serializer!r}: use 'json', 'str', 'raw' or a Codec object")


__all__ = ["Codec", "CodecError", "JsonCodec", "RawCodec", "StrCodec", "codec_for"]
