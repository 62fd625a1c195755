"""A SendMessage whose params break the contract's bound (a 500 KB push parameter was
delivered) is a dead letter at the notifications consumer: nothing is sent for it,
and the next command of the partition is delivered."""

from __future__ import annotations

from services.contracts.models import Channel, DeadLetter
from services.contracts.topics import COMMANDS_NOTIFY
from tests.integration.actions.conftest import ActionsEnv, message, wait_for


def test_a_message_with_oversized_params_is_dead_lettered_and_the_next_one_sent(
    env: ActionsEnv,
) -> None:
    good = message("olga", Channel.PUSH, cid="after")
    # The model refuses such params, so a producer that skips the contract is forged here.
    huge = message("olga", Channel.PUSH, cid="huge").model_copy(
        update={"params": {"text": "x" * 500_000}}
    )
    many = message("olga", Channel.PUSH, cid="many").model_copy(
        update={"params": {f"p{i}": "v" for i in range(100)}}
    )
    env.send(huge, many, good)  # one member: one partition, in this order
    env.start(env.settings(), ("notify",))

    wait_for(lambda: len(env.sinks.log.messages()) == 1, "the good message at the sink")
    letters: list[DeadLetter] = wait_for(
        lambda: len(found := env.dead_letters()) == 2 and found, "two dead letters", 30
    )
    sent = env.sinks.log.messages()
    assert [(m["channel"], m["key"]) for m in sent] == [("push", "after")]
    topic = env.topic(COMMANDS_NOTIFY)
    refused = sorted(letters, key=lambda d: d.original_offset)
    assert [d.original_topic for d in refused] == [topic, topic]
    assert all(d.error_class == "services.contracts.codec.DecodeError" for d in refused)
    assert "params" in refused[0].reason and "at most 1000" in refused[0].reason
    assert "params" in refused[1].reason and "at most 32" in refused[1].reason
    assert refused[0].value is not None and len(refused[0].value) > 500_000
    assert env.scalar("SELECT count(*) FROM deliveries") == 1
