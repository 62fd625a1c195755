"""Which namespace the command line works on: flag > environment > chosen context >
default, with prefix and database as one unit (naming either sets the saved context
aside); what ./run copies from stack.env is the default, not the operator's
environment; ``use`` saves the choice and says what is in effect, every other command
says so on stderr and in its target line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.ops import cli_context
from services.ops.cli_context import Context, ContextError, Saved, resolve
from services.ops.namespace_search import elsewhere, group_namespace, other_group_namespaces

STACK_URL = "postgresql://postgres@127.0.0.1:55432/social_loyalty"
STACK = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092", "DATABASE_URL": STACK_URL}
DEMO = Saved(current="demo")


def test_nothing_chosen_is_the_stack_namespace() -> None:
    target = resolve(environ=dict(STACK), stack=STACK, saved=Saved())
    assert target.context.name == "default"
    assert (target.prefix.value, target.prefix.source) == ("", "default")
    assert (target.database_url.value, target.database_url.source) == (STACK_URL, "default")
    assert target.group_prefixes.value == "social-loyalty"


def test_the_chosen_context_beats_what_run_copied_from_stack_env() -> None:
    target = resolve(environ=dict(STACK), stack=STACK, saved=DEMO)
    assert (target.prefix.value, target.prefix.source) == ("demo.", "context demo")
    assert target.database_url.value == (
        "postgresql://postgres@127.0.0.1:55432/social_loyalty_demo"
    )
    assert target.database_url.source == "context demo"
    assert target.group_prefixes.value == "demo."


MINE = "postgresql://me@db.example:5432/elsewhere"


def test_the_operators_database_sets_the_saved_context_aside_prefix_too() -> None:
    target = resolve(environ={**STACK, "DATABASE_URL": MINE}, stack=STACK, saved=DEMO)
    assert (target.database_url.value, target.database_url.source) == (MINE, "$DATABASE_URL")
    assert (target.prefix.value, target.prefix.source) == ("", "default")
    assert target.group_prefixes.value == "social-loyalty"
    assert (target.context.name, target.set_aside, target.given) == (
        "default",
        "demo",
        ("$DATABASE_URL",),
    )


@pytest.mark.parametrize(
    ("environ", "flags", "given"),
    [
        ({"TOPIC_PREFIX": ""}, {}, "$TOPIC_PREFIX"),
        ({}, {"prefix_flag": ""}, "--prefix"),
        ({}, {"database_flag": MINE}, "--database-url"),
    ],
)
def test_an_empty_prefix_given_is_the_main_namespace_not_the_main_topics_in_demos_database(
    environ: dict[str, str], flags: dict[str, str], given: str
) -> None:
    target = resolve(environ={**STACK, **environ}, stack=STACK, saved=DEMO, **flags)
    assert target.prefix.value == ""
    assert not target.database_url.value.endswith("/social_loyalty_demo")
    assert target.given == (given,)


def test_only_an_explicit_context_fills_in_what_was_not_given() -> None:
    environ = {**STACK, "DATABASE_URL": MINE}
    target = resolve(environ=environ, stack=STACK, saved=DEMO, context_flag="demo")
    assert (target.prefix.value, target.prefix.source) == ("demo.", "context demo")
    assert (target.database_url.value, target.database_url.source) == (MINE, "$DATABASE_URL")
    assert target.set_aside is None


def test_a_service_spelling_in_the_environment_is_the_operators_environment() -> None:
    environ = {**STACK, "RULES_DATABASE__DATABASE_URL": MINE}
    target = resolve(environ=environ, stack=STACK, saved=DEMO)
    assert (target.database_url.value, target.database_url.source) == (
        MINE,
        "$RULES_DATABASE__DATABASE_URL",
    )
    assert (target.prefix.value, target.set_aside) == ("", "demo")
    environ = {**STACK, "ACTIONS_TOPICS__PREFIX": "t.x."}
    target = resolve(environ=environ, stack=STACK, saved=DEMO)
    assert (target.prefix.source, target.set_aside) == ("$ACTIONS_TOPICS__PREFIX", "demo")
    assert target.database_url.value == STACK_URL


def test_apply_writes_the_context_into_every_service_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A spelling with stack.env's value is the stack's default: the context applies, and
    the rules commands read the database ``use`` reports."""
    from services.rules.settings import RulesSettings

    environ = {**STACK, "RULES_DATABASE__DATABASE_URL": STACK_URL}
    target = resolve(environ=environ, stack=STACK, saved=DEMO)
    assert target.database_url.source == "context demo"
    cli_context.apply(target, environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RULES_TOPICS__PREFIX", raising=False)
    settings = RulesSettings()
    assert settings.database.database_url.get_secret_value() == target.database_url.value
    assert target.database_url.value.endswith("/social_loyalty_demo")
    assert settings.topics.prefix == "demo."


def test_a_flag_beats_the_environment_and_the_context() -> None:
    environ = {**STACK, "TOPIC_PREFIX": "t.x.", "DATABASE_URL": "postgresql://me@h/db"}
    target = resolve(
        environ=environ,
        stack=STACK,
        saved=DEMO,
        prefix_flag="bench.",
        database_flag="postgresql://me@h/other",
    )
    assert (target.prefix.value, target.prefix.source) == ("bench.", "--prefix")
    assert (target.database_url.value, target.database_url.source) == (
        "postgresql://me@h/other",
        "--database-url",
    )
    assert target.group_prefixes.value == "bench."


def test_context_flag_beats_the_saved_choice_and_an_unknown_one_is_an_error() -> None:
    target = resolve(environ=dict(STACK), stack=STACK, saved=DEMO, context_flag="default")
    assert (target.context.name, target.prefix.value) == ("default", "")
    with pytest.raises(ContextError, match="'nope'"):
        resolve(environ=dict(STACK), stack=STACK, saved=DEMO, context_flag="nope")


def test_the_group_prefixes_of_the_environment_win_over_the_derived_ones() -> None:
    environ = {**STACK, "LAGMONITOR_GROUP_PREFIXES": "x.,y."}
    target = resolve(environ=environ, stack=STACK, saved=DEMO)
    assert target.group_prefixes.value == "x.,y."


def test_apply_writes_only_what_the_context_decided() -> None:
    environ = {**STACK, "TOPIC_PREFIX": "t.x."}
    target = resolve(environ=environ, stack=STACK, saved=DEMO, context_flag="demo")
    cli_context.apply(target, environ)
    assert environ["TOPIC_PREFIX"] == "t.x."
    assert environ["DATABASE_URL"].endswith("/social_loyalty_demo")
    assert environ["LAGMONITOR_GROUP_PREFIXES"] == "t.x."


def test_a_database_url_keeps_its_login_and_options_on_another_database() -> None:
    url = "postgresql://u:pw@h:5433/social_loyalty?sslmode=require"
    assert cli_context.with_database(url, "social_loyalty_demo") == (
        "postgresql://u:pw@h:5433/social_loyalty_demo?sslmode=require"
    )
    assert "dbname=d" in cli_context.with_database("host=h dbname=x", "d")


def test_stack_env_is_read_as_run_sources_it(tmp_path: Path) -> None:
    (tmp_path / "stack.env").write_text(
        f"export DATABASE_URL={STACK_URL}\nexport KAFKA_SASL_PASSWORD='a b'\n# comment\n"
    )
    values = cli_context.read_stack_env({"SL_STACK_DIR": str(tmp_path)})
    assert values == {"DATABASE_URL": STACK_URL, "KAFKA_SASL_PASSWORD": "a b"}
    assert cli_context.read_stack_env({"SL_STACK_DIR": str(tmp_path / "none")}) == {}


def test_choose_defines_saves_and_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "cli-contexts.json"
    assert cli_context.load(path) == Saved()
    mine = cli_context.choose(Saved(), "mine", "mine.", "social_loyalty_mine")
    cli_context.save(path, mine)
    assert cli_context.load(path) == Saved(
        "mine", {"mine": Context("mine", "mine.", "social_loyalty_mine")}
    )
    back = cli_context.choose(mine, "default")
    assert back.current is None
    assert "mine" in back.contexts  # defined once, chosen again later by name
    with pytest.raises(ContextError, match="built in"):
        cli_context.choose(Saved(), "demo", "other.")
    with pytest.raises(ContextError, match="not defined"):
        cli_context.choose(Saved(), "nope")
    path.write_text("{not json")
    with pytest.raises(ContextError, match="cannot read"):
        cli_context.load(path)


def test_how_to_reach_names_the_context_else_the_flag() -> None:
    saved = Saved(None, {"mine": Context("mine", "t.mine.", "db_mine")})
    assert cli_context.how_to_reach(saved, prefix="demo.") == "./run cli use demo"
    assert cli_context.how_to_reach(saved, prefix="social-loyalty.") == "./run cli use default"
    assert cli_context.how_to_reach(saved, prefix="t.mine.") == "./run cli use mine"
    assert cli_context.how_to_reach(saved, prefix="t.x.") == "--prefix t.x."
    assert cli_context.how_to_reach(saved, database="db_mine") == "./run cli use mine"
    assert cli_context.how_to_reach(saved, database="other") == "--database-url .../other"


def test_groups_belong_to_the_namespace_before_the_service_name() -> None:
    assert group_namespace("demo.actions.bonus") == "demo."
    assert group_namespace("social-loyalty.rules") == "social-loyalty."
    assert group_namespace("t.cli.ab12.rules") == "t.cli.ab12."
    assert group_namespace("bench.rules.x.replay.likes") == "bench."
    assert group_namespace("connect-sink") == "connect-sink"
    groups = ["demo.rules", "demo.detector", "t.a.rules", "social-loyalty.rules"]
    assert other_group_namespaces(groups, ["social-loyalty"]) == ["demo.", "t.a."]


def test_the_elsewhere_clause_names_three_and_counts_the_rest() -> None:
    reach = {p: f"--prefix {p}" for p in "abcde"}
    line = elsewhere(list("abcde"), "groups", "under", reach, "none")
    assert line == (
        "groups exist under 'a' (--prefix a), 'b' (--prefix b), 'c' (--prefix c) and 2 more"
    )
    assert elsewhere([], "groups", "under", reach, "none") == "none"


def test_every_namespace_a_context_names_is_listed_however_many_others() -> None:
    reach = {p: f"--prefix {p}" for p in "abcd"} | {"x": "./run cli use x", "y": "./run cli use y"}
    line = elsewhere(list("abcdxy"), "groups", "under", reach, "none")
    assert line.startswith("groups exist under 'x' (./run cli use x), 'y' (./run cli use y), ")
    assert line.endswith("'c' (--prefix c) and 1 more")


def test_use_saves_the_choice_and_says_what_is_in_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "stack.env").write_text(f"export DATABASE_URL={STACK_URL}\n")
    monkeypatch.setenv("SL_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("SL_CLI_CONTEXTS", str(tmp_path / "cli-contexts.json"))
    monkeypatch.setenv("DATABASE_URL", STACK_URL)
    monkeypatch.delenv("TOPIC_PREFIX", raising=False)
    monkeypatch.delenv("LAGMONITOR_GROUP_PREFIXES", raising=False)
    runner = CliRunner()

    chose = runner.invoke(app, ["use", "demo"])
    assert chose.exit_code == 0, chose.output
    assert chose.output.startswith("using context demo: topics under 'demo.'")

    shown = runner.invoke(app, ["use"]).output.splitlines()
    assert shown[0].startswith("context: demo (chosen with `use`")
    assert shown[1] == "topic prefix: 'demo.' (context demo)"
    assert shown[2] == (
        "database: postgresql://postgres@127.0.0.1:55432/social_loyalty_demo (context demo)"
    )
    assert shown[3] == "consumer groups: 'demo.' (the topic prefix (context demo))"

    flagged = runner.invoke(app, ["--prefix", "t.x.", "use"]).output.splitlines()
    assert flagged[1] == "topic prefix: 't.x.' (--prefix)"

    monkeypatch.setenv("TOPIC_PREFIX", "mine.")
    noted = runner.invoke(app, ["use", "bench"])
    assert "note: TOPIC_PREFIX in your environment sets the context aside" in noted.stderr
    aside = runner.invoke(app, ["use"]).output.splitlines()
    assert (
        aside[0] == "context: default (bench, chosen with `use`, not applied: $TOPIC_PREFIX given)"
    )
    monkeypatch.delenv("TOPIC_PREFIX")

    back = runner.invoke(app, ["use", "default"])
    assert back.exit_code == 0
    assert cli_context.load(tmp_path / "cli-contexts.json").current is None


def test_every_command_says_the_saved_context_and_its_target_line_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cron job with stack.env's DATABASE_URL after someone ran ``use demo`` is not
    sent to the demo's database unsaid. (Nothing answers on port 1: the command stops
    after its target line.)"""
    down = "postgresql://postgres@127.0.0.1:1/social_loyalty"
    (tmp_path / "stack.env").write_text(f"export DATABASE_URL={down}\n")
    contexts = tmp_path / "cli-contexts.json"
    monkeypatch.setenv("SL_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("SL_CLI_CONTEXTS", str(contexts))
    monkeypatch.setenv("DATABASE_URL", down)
    for name in ("TOPIC_PREFIX", "LAGMONITOR_GROUP_PREFIXES", "RULES_DATABASE__DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    offer = tmp_path / "offer.yaml"
    offer.write_text("id: x\n")
    runner = CliRunner()
    assert runner.invoke(app, ["use", "demo"]).exit_code == 0

    changed = runner.invoke(app, ["offers", "create", str(offer)])
    lines = changed.stderr.splitlines()
    assert lines[0] == (
        f"note: context demo ({contexts}): prefix 'demo.', database 'social_loyalty_demo'; "
        "`./run cli use default` goes back"
    )
    assert lines[1] == (
        "target: database postgresql://postgres@127.0.0.1:1/social_loyalty_demo, "
        f"context demo ({contexts})"
    )
    assert changed.exit_code == 2

    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/mine")
    aside = runner.invoke(app, ["offers", "create", str(offer)]).stderr.splitlines()
    assert aside[0] == (
        f"note: context demo ({contexts}) not applied: $DATABASE_URL given; prefix '', "
        "database 'mine' (--context demo fills in the rest)"
    )
    assert aside[1] == "target: database postgresql://postgres@127.0.0.1:1/mine"

    runner.invoke(app, ["use", "default"])
    quiet = runner.invoke(app, ["offers", "create", str(offer)]).stderr.splitlines()
    assert quiet[0] == "target: database postgresql://postgres@127.0.0.1:1/mine"


def test_the_target_line_names_a_context_in_effect_and_shows_the_file_in_the_checkout() -> None:
    from services.runtime import terminal

    target = resolve(environ=dict(STACK), stack=STACK, saved=DEMO)
    path = cli_context.ROOT / "deploy" / ".local" / "cli-contexts.json"
    label = cli_context.in_effect(target, path)
    assert label == "demo (deploy/.local/cli-contexts.json)"
    chosen = resolve(environ=dict(STACK), stack=STACK, saved=Saved(), context_flag="bench")
    assert cli_context.in_effect(chosen, path) == "bench (--context)"
    assert cli_context.notice(chosen, path) is None  # said by the flag, for this command
    assert cli_context.in_effect(resolve(environ=STACK, stack=STACK, saved=Saved()), path) is None
    terminal.name_context(label)
    try:
        line = terminal.target_line(kafka=False, prefix=False)
    finally:
        terminal.name_context(None)
    assert line.endswith(", context demo (deploy/.local/cli-contexts.json)")
