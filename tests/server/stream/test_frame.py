"""The SSE bytes: one message encoded exactly, and a frame that can be resumed in its middle."""

from __future__ import annotations

from sse_batcher.batcher import StoredMessage
from sse_batcher.server.stream.frame import encode_message, frame_of


def test_a_message_is_its_id_event_and_one_data_line() -> None:
    message = StoredMessage(7, "JOB_DONE", "JOB_DONE", "web", 1, b'{"type":"JOB_DONE"}', 0.0)
    assert encode_message(message) == b'id: 7\nevent: JOB_DONE\ndata: {"type":"JOB_DONE"}\n\n'


def test_a_frame_resumed_in_its_middle_skips_exactly_what_was_sent() -> None:
    messages = [StoredMessage(i, "A", "A", "s", 1, b'{"i":%d}' % i, 0.0) for i in (5, 6, 9)]
    frame = frame_of([(m.id, encode_message(m)) for m in messages])
    assert frame.after(None) == (frame.data, 3)
    assert frame.after(6) == (encode_message(messages[2]), 1)
    assert frame.after(5)[0] == encode_message(messages[1]) + encode_message(messages[2])
    assert frame.after(9) == (b"", 0)
