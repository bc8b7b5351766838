from __future__ import annotations

import msgspec
import pytest

from sse_batcher.batcher.errors import EventValidationError
from sse_batcher.batcher.events import check_key, check_priority, check_source, check_type, encode_data


@pytest.mark.parametrize("value", ["JOB_STARTED", "A", "X" * 64, "T_9"])
def test_valid_types_pass(value: str) -> None:
    assert check_type(value) == value


@pytest.mark.parametrize("value", ["", "job_started", "X" * 65, "JOB-STARTED", "JOB STARTED", None, 5, "ÄÖ"])
def test_invalid_types_name_the_field_and_rule(value: object) -> None:
    with pytest.raises(EventValidationError) as err:
        check_type(value)
    assert err.value.field == "type"
    assert "A-Z" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("value", ["thumbnail", "render-node.3", "a_b", "Z" * 64])
def test_valid_sources_pass(value: str) -> None:
    assert check_source(value) == value


@pytest.mark.parametrize("value", ["", "a b", "x" * 65, "<script>", None, "naïve"])
def test_invalid_sources_rejected(value: object) -> None:
    with pytest.raises(EventValidationError, match="source"):
        check_source(value)


def test_priority_and_key_rules() -> None:
    assert check_priority("critical") == "critical"
    with pytest.raises(EventValidationError, match="priority"):
        check_priority("urgent")
    assert check_key(None) is None
    assert check_key("job-1") == "job-1"
    for bad in ("", "k" * 257, 5, "\x00", "job\x001"):
        with pytest.raises(EventValidationError, match="key"):
            check_key(bad)


def test_data_is_encoded_once_and_round_trips() -> None:
    data = {"job_id": 7, "name": "<img src=x onerror=alert(1)>", "nested": {"a": [1, 2.5, None]}}
    assert msgspec.json.decode(encode_data(data, 1024)) == data


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        ([1, 2], "JSON object"),
        ("text", "JSON object"),
        ({"x": object()}, "JSON-encodable"),
        ({"x": "a" * 100}, "at most 64 bytes"),
        ({"x": "nul\x00byte"}, "NUL"),
        ({"x": "\ud800"}, "JSON-encodable"),
    ],
)
def test_bad_data_is_rejected_with_its_rule(data: object, rule: str) -> None:
    with pytest.raises(EventValidationError, match=rule) as err:
        encode_data(data, 64)
    assert err.value.field == "data"
