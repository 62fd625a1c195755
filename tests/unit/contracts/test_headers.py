"""Every event, command and outcome says what it is in CloudEvents-style Kafka headers."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.contracts import models as m
from services.contracts.codec import SingleObjectCodec
from services.contracts.examples import all_records
from services.contracts.headers import contract_headers, full_name, headers_for, headers_or_none

KINDS = (*m.EVENT_TYPES.values(), *m.COMMAND_TYPES.values(), *m.OUTCOME_TYPES.values())


@pytest.mark.parametrize("record", [r for r in all_records() if isinstance(r, KINDS)], ids=str)
def test_the_headers_name_the_record_its_id_time_and_schema(record: m.Record) -> None:
    headers = dict(contract_headers(record, "detector"))
    assert set(headers) == {
        "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_avrofingerprint",
        "content-type",
    }  # fmt: skip
    assert headers["ce_type"] == record.avro_name.encode()
    ident = getattr(record, "event_id", None) or getattr(record, "command_id", None)
    assert headers["ce_id"] == str(ident).encode()
    assert headers["ce_source"] == b"social-loyalty/detector"
    ce_time = headers["ce_time"]
    assert isinstance(ce_time, bytes)
    moment = datetime.fromisoformat(ce_time.decode())
    when = next(
        getattr(record, f)
        for f in ("observed_at", "issued_at", "occurred_at")
        if hasattr(record, f)
    )
    assert moment == when
    # the fingerprint is the one the value's own single-object framing carries
    value = SingleObjectCodec().encode(record)
    assert headers["ce_avrofingerprint"] == value[2:10].hex().encode()


def test_records_without_an_id_and_a_time_get_none() -> None:
    (letter,) = [r for r in all_records() if isinstance(r, m.DeadLetter)][:1]
    assert headers_or_none(letter, "actions") is None
    with pytest.raises(ValueError, match="not an event, a command or an outcome"):
        contract_headers(letter, "actions")


def test_the_plain_path_gives_the_same_headers() -> None:
    command = next(r for r in all_records() if isinstance(r, m.BonusAccrue))
    plain = headers_for(full_name("BonusAccrue"), command.command_id, command.issued_at, "rules")
    assert plain == contract_headers(command, "rules")
