from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.batcher.protocols import Rejected


def message(seq: int, payload: bytes = b'{"x":1}') -> Message:
    return Message(
        idem_key=f"p:{seq}",
        type="JOBS_BATCH_STARTED",
        event_type="JOB_STARTED",
        source="thumbnail",
        event_count=2,
        first_seq=seq,
        last_seq=seq + 1,
        ts=1763870000.123,
        payload=payload,
        priority="critical",
    )


def test_appended_batches_come_back_exactly_and_in_order(tmp_path: Path) -> None:
    deadletter = DeadLetterFile(tmp_path / "dl")
    first = [message(1, b'{"text":"\xc3\xa9\\n\\u2028"}'), message(3, b"\x00\xff not even json")]
    second = [message(5)]
    deadletter.append(first)
    deadletter.append(second)

    assert DeadLetterFile(tmp_path / "dl").batches() == [first, second]
    assert deadletter.count_batches() == 2


@given(
    payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=5),
    key=st.text(min_size=1, max_size=20),
    ts=st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_message_round_trips(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], key: str, ts: float
) -> None:
    deadletter = DeadLetterFile(tmp_path_factory.mktemp("dl"))
    batch = [
        Message(
            idem_key=key,
            type="T",
            event_type="T",
            source="s",
            event_count=1,
            first_seq=i,
            last_seq=i,
            ts=ts,
            payload=payload,
        )
        for i, payload in enumerate(payloads)
    ]
    deadletter.append(batch)
    assert deadletter.batches() == [batch]


def test_missing_file_holds_no_batches_and_directory_is_created_on_append(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"
    deadletter = DeadLetterFile(directory)
    assert deadletter.batches() == []
    assert deadletter.count_batches() == 0

    deadletter.append([message(1)])
    assert (directory / "deadletter.jsonl").is_file()


def test_torn_last_line_is_skipped_and_next_append_starts_a_new_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deadletter = DeadLetterFile(tmp_path)
    deadletter.append([message(1)])
    with deadletter.path.open("ab") as file:
        file.write(b'[{"idem_key":"p:2","ty')  # a crash in the middle of an append

    with caplog.at_level(logging.WARNING, logger="sse_batcher.batcher.log.deadletter"):
        assert deadletter.batches() == [[message(1)]]
    assert "torn last line" in caplog.text

    deadletter.append([message(3)])
    assert deadletter.batches() == [[message(1)], [message(3)]]


def test_clear_empties_the_file(tmp_path: Path) -> None:
    deadletter = DeadLetterFile(tmp_path)
    deadletter.append([message(1)])
    deadletter.clear()

    assert deadletter.batches() == []
    assert deadletter.count_batches() == 0
    assert deadletter.path.stat().st_size == 0
    deadletter.append([message(2)])
    assert deadletter.batches() == [[message(2)]]


def test_clear_without_a_file_does_nothing(tmp_path: Path) -> None:
    DeadLetterFile(tmp_path / "absent").clear()
    assert not (tmp_path / "absent").exists()


def test_quarantined_messages_keep_their_reason_and_are_never_written_back(tmp_path: Path) -> None:
    deadletter = DeadLetterFile(tmp_path)
    refused = [Rejected(message=message(1, b"\x00"), reason="DataError [22P05]: \\u0000")]
    deadletter.quarantine(refused)
    deadletter.quarantine([Rejected(message=message(2), reason="other")])

    assert deadletter.quarantined() == [*refused, Rejected(message=message(2), reason="other")]
    assert deadletter.count_batches() == 0
    assert deadletter.rejected_path == tmp_path / "rejected.jsonl"


def test_a_file_keeps_no_event_keys_so_its_payloads_alone_say_what_they_carry(tmp_path: Path) -> None:
    # The keys and seqs a message carries only repeat its payload; read back, the payload is decoded.
    carrying = msgspec.structs.replace(message(1), event_keys=("job-1", None), event_seqs=(1, 2))
    deadletter = DeadLetterFile(tmp_path)
    deadletter.append([carrying])
    deadletter.quarantine([Rejected(message=carrying, reason="refused")])

    assert b"event_keys" not in deadletter.path.read_bytes() + deadletter.rejected_path.read_bytes()
    assert deadletter.batches() == [[message(1)]]
    assert [r.message for r in deadletter.quarantined()] == [message(1)]


def test_adopting_a_file_moves_its_readable_batches_behind_ours_and_empties_it(tmp_path: Path) -> None:
    mine, orphan = DeadLetterFile(tmp_path / "mine"), DeadLetterFile(tmp_path / "orphan")
    first = [Message("k1", "T", "T", "s", 1, 1, 1, 1.0, b"{}")]
    second = [Message("k2", "T", "T", "s", 1, 2, 2, 1.0, b"{}")]
    mine.append(first)
    orphan.append(second)
    with orphan.path.open("ab") as file:
        file.write(b'[{"idem_key": "torn')  # a crash mid-append: never acknowledged
    assert mine.adopt(orphan) == 1
    assert mine.batches() == [first, second]
    assert orphan.count_batches() == 0
