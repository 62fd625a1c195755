"""The ledger consumer through a PostgreSQL outage while commands keep arriving: the
checkpoint protocol pauses its partitions until they were sought back to the stored
offsets, so every command is applied exactly once (before it, the first batch after the
outage stored its own end offset over what failed: a 20 s outage lost a third)."""

from __future__ import annotations

import threading
import time

import httpx
from pydantic import SecretStr

from services.contracts.topics import DEADLETTER
from services.runtime.settings import DatabaseSettings
from tests.integration.actions.conftest import ActionsEnv, accrue, wait_for
from tests.integration.outage import TcpSwitch, ready, seconds_until

MEMBERS = 50
COMMANDS = 300


def test_a_postgres_outage_mid_stream_loses_no_command_and_applies_none_twice(
    env: ActionsEnv,
) -> None:
    url = env.database.database_url.get_secret_value()
    switch = TcpSwitch.before(url)
    through = DatabaseSettings(database_url=SecretStr(switch.url(url)))
    settings = env.settings(database=through, batch_size=20)
    commands = [accrue(f"m{n % MEMBERS}", 1 + n % 7, cid=f"c-{n}") for n in range(COMMANDS)]
    env.send(*commands[:50])
    env.start(settings, ("bonus",))
    wait_for(lambda: (env.scalar("SELECT count(*) FROM entries") or 0) >= 50, "the first wave")

    def trickle() -> None:  # commands keep coming through the outage
        for command in commands[50:]:
            env.send(command)
            time.sleep(0.05)

    sender = threading.Thread(target=trickle)
    sender.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", timeout=5) as api:
        time.sleep(2)
        switch.off()
        assert seconds_until(lambda: not ready(api), "/readyz false", 5) <= 5
        time.sleep(8)
        switch.on()
        assert seconds_until(lambda: ready(api), "/readyz true again", 30) <= 30
    sender.join()
    wait_for(lambda: env.scalar("SELECT count(*) FROM entries") == COMMANDS, "every command", 90)
    expected: dict[str, int] = {}
    for command in commands:
        expected[command.member_id] = expected.get(command.member_id, 0) + command.points
    balances = dict(env.query("SELECT member_id, balance FROM accounts"))
    assert balances == expected
    assert env.read_topic(DEADLETTER) == []
    switch.close()
