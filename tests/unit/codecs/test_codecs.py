import pytest

import grey
from grey.codecs import CodecError, JsonCodec, RawCodec, StrCodec, codec_for


class Click(grey.Record):
    user_id: str
    amount: float = 0.0


def test_json_record_round_trip() -> None:
    codec = codec_for(Click)
    data = codec.dumps(Click(user_id="u1", amount=2.5))
    assert data == b'{"user_id":"u1","amount":2.5}'
    assert codec.loads(data) == Click(user_id="u1", amount=2.5)


def test_json_defaults_and_dicts() -> None:
    assert codec_for(Click).loads(b'{"user_id":"u"}') == Click(user_id="u")
    assert codec_for(None).loads(b'{"a":[1,2]}') == {"a": [1, 2]}


def test_malformed_json_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="malformed JSON"):
        codec_for(None).loads(b"{nope")


def test_schema_mismatch_names_the_field() -> None:
    with pytest.raises(CodecError, match=r"user_id"):
        codec_for(Click).loads(b'{"user_id": 5}')


def test_str_and_raw() -> None:
    assert codec_for(str).loads(b"h\xc3\xa9") == "hé"
    assert codec_for(bytes).dumps(b"x") == b"x"
    with pytest.raises(CodecError):
        StrCodec().loads(b"\xff")
    with pytest.raises(CodecError):
        RawCodec().dumps("text")


def test_serializer_by_name_wins_over_type() -> None:
    assert isinstance(codec_for(str, "json"), JsonCodec)
    with pytest.raises(ValueError, match="unknown serializer"):
        codec_for(None, "yaml")


def test_record_helpers() -> None:
    click = Click.from_dict({"user_id": "a", "amount": 1})
    assert click.to_dict() == {"user_id": "a", "amount": 1.0}


def test_loads_many_keeps_none_and_fails_on_any_bad_item() -> None:
    codec = codec_for(Click)
    good = codec.dumps(Click(user_id="a"))
    assert codec.loads_many([good, None]) == [Click(user_id="a"), None]
    with pytest.raises(CodecError):
        codec.loads_many([good, b"{bad"])
    assert codec_for(str).loads_many([b"x", None]) == ["x", None]
    assert codec_for(bytes).loads_many([b"x"]) == [b"x"]
