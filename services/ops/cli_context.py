"""The namespace the operator's command line works on, picked once as kubectl picks a context.

A namespace is a topic prefix (the consumer groups are named after it too) and a
database on the stack's PostgreSQL server: the services' own (prefix '', the database
``DATABASE_URL`` names), the demo's (``demo.``, ``social_loyalty_demo``), the system
benchmark's (``bench.``, ``social_loyalty_bench``), or one the operator defines.
``social-loyalty use NAME`` saves the choice in ``$SL_STACK_DIR/cli-contexts.json``
(``deploy/.local/`` by default) and every later command reads it.

Each setting, first match wins: the command-line flag, the environment, the chosen
context, the default. The topic prefix and the database are one unit: once a flag or
the operator's environment names either, the context ``use`` saved fills neither
(only ``--context NAME`` may supply the other), so a command never reads one
namespace's topics with another's database. The values ``./run`` copies from the
local stack's ``stack.env`` into every command's environment are the stack's
defaults, not the operator's environment: they name the server and the login, the
context picks the namespace on it. (A variable you export with exactly the value
stack.env has is therefore indistinguishable from it and counts as the default.)
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
CONTEXTS_FILE = "cli-contexts.json"
DEFAULT = "default"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:55432/social_loyalty"
"""``DatabaseSettings``' default, for a machine with no stack.env and no DATABASE_URL."""
DEFAULT_GROUP_PREFIX = "social-loyalty"
"""``LagMonitorSettings``' default: the services' groups under the empty topic prefix."""

USE = "./run cli use"
"""How an empty answer tells the operator to switch (``./run cli`` is the README's entry)."""

PREFIX = ("TOPIC_PREFIX", "_TOPICS__PREFIX")
DATABASE = ("DATABASE_URL", "_DATABASE__DATABASE_URL")
"""A namespace setting: its plain name and the end of its service-specific spellings
(``RULES_TOPICS__PREFIX``, ``RULES_DATABASE__DATABASE_URL``)."""

_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_CONTEXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ContextError(ValueError):
    """The saved contexts cannot be read, or a context asked for is not defined."""


@dataclass(frozen=True)
class Context:
    """A named namespace. ``database`` None: the database ``DATABASE_URL`` names."""

    name: str
    prefix: str
    database: str | None


BUILT_IN: dict[str, Context] = {
    c.name: c
    for c in (
        Context(DEFAULT, "", None),
        Context("demo", "demo.", "social_loyalty_demo"),  # services/demo/namespace.py
        Context("bench", "bench.", "social_loyalty_bench"),  # bench/system.py
    )
}


@dataclass(frozen=True)
class Saved:
    """What ``cli-contexts.json`` holds: the current context and the operator's own."""

    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    def all(self) -> dict[str, Context]:
        return {**BUILT_IN, **self.contexts}

    def for_prefix(self, prefix: str) -> str | None:
        """The name of a context with this topic (or consumer-group) prefix."""
        wanted = group_prefix(prefix).rstrip(".")
        for context in self.all().values():
            if group_prefix(context.prefix).rstrip(".") == wanted:
                return context.name
        return None

    def for_database(self, database: str) -> str | None:
        for context in self.all().values():
            if context.database == database:
                return context.name
        return None


@dataclass(frozen=True)
class Choice:
    """A setting's value and where it came from (said by ``use`` and in empty answers)."""

    value: str
    source: str


@dataclass(frozen=True)
class Target:
    context: Context
    context_source: str
    prefix: Choice
    database_url: Choice
    group_prefixes: Choice
    set_aside: str | None = None
    """The context ``use`` saved, when ``given`` named part of the namespace instead."""
    given: tuple[str, ...] = ()


def group_prefix(topic_prefix: str) -> str:
    """The consumer groups of a topic prefix's services (``demo.`` -> ``demo.``; the
    empty prefix -> ``social-loyalty``), as ``services.ops.system.app_stem`` names them."""
    stem = topic_prefix.rstrip(".")
    return f"{stem}." if stem else DEFAULT_GROUP_PREFIX


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server, login kept."""
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path=f"/{database}"))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=database)


def database_name(url: str) -> str:
    """The database a connection string names (``social_loyalty``)."""
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(url).get("dbname") or "")


def server_of(url: str) -> str:
    """``host:port`` of a connection string, for a line an operator reads."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


def operator_environment(environ: Mapping[str, str], stack: Mapping[str, str]) -> dict[str, str]:
    """The variables the operator set: those ``./run`` copied from stack.env are left out."""
    return {k: v for k, v in environ.items() if stack.get(k) != v}


def spellings(environ: Mapping[str, str], name: str, nested: str) -> list[str]:
    """``name`` and every service-specific spelling of it in ``environ``."""
    return [name, *sorted(k for k in environ if k.endswith(nested))]


def override(environ: MutableMapping[str, str], name: str, value: str, nested: str) -> None:
    """Set ``name`` and every service-specific spelling of it (``nested`` =
    ``_KAFKA__BOOTSTRAP_SERVERS`` covers ``RULES_KAFKA__BOOTSTRAP_SERVERS``), so the value
    wins over whatever the environment says, for every sub-command."""
    for key in spellings(environ, name, nested):
        environ[key] = value


def _set_by_operator(
    environ: Mapping[str, str], stack: Mapping[str, str], name: str, nested: str
) -> str | None:
    """The first spelling of a setting the operator set. A service-specific spelling
    with stack.env's value for the plain name names the stack's default too: ``apply``
    overrides it like the plain one."""
    for key in spellings(environ, name, nested):
        if key in environ and environ[key] not in (stack.get(key), stack.get(name)):
            return key
    return None


def _pick(
    *,
    flag: str | None,
    flag_name: str,
    environ: Mapping[str, str],
    env_name: str | None,
    context: Context,
    from_context: str | None,
    default: Choice,
) -> Choice:
    if flag is not None:
        return Choice(flag, flag_name)
    if env_name is not None:
        return Choice(environ[env_name], f"${env_name}")
    if from_context is not None and context.name != DEFAULT:
        return Choice(from_context, f"context {context.name}")
    return default


def resolve(
    *,
    environ: Mapping[str, str],
    stack: Mapping[str, str],
    saved: Saved,
    context_flag: str | None = None,
    prefix_flag: str | None = None,
    database_flag: str | None = None,
) -> Target:
    """Each setting from the first of: flag, environment, context, default. The context
    itself: ``--context``, else the one ``use`` saved, else ``default``; the saved one
    only while neither the prefix nor the database is given by a flag or the operator's
    environment (one namespace's topics with another's database is no namespace)."""
    contexts = saved.all()
    prefix_env = _set_by_operator(environ, stack, *PREFIX)
    database_env = _set_by_operator(environ, stack, *DATABASE)
    given = tuple(
        how
        for how, present in (
            ("--prefix", prefix_flag is not None),
            ("--database-url", database_flag is not None),
            (f"${prefix_env}", prefix_env is not None),
            (f"${database_env}", database_env is not None),
        )
        if present
    )
    set_aside = None
    if context_flag is not None:
        name, source = context_flag, "--context"
    elif saved.current and saved.current != DEFAULT and given:
        name, source, set_aside = DEFAULT, "default", saved.current
    elif saved.current:
        name, source = saved.current, "use"
    else:
        name, source = DEFAULT, "default"
    if name not in contexts:
        raise ContextError(
            f"context {name!r} ({source}) is not defined; known: {', '.join(contexts)}"
        )
    context = contexts[name]
    env = operator_environment(environ, stack)
    prefix = _pick(
        flag=prefix_flag,
        flag_name="--prefix",
        environ=environ,
        env_name=prefix_env,
        context=context,
        from_context=context.prefix,
        default=Choice("", "default"),
    )
    stack_url = stack.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    database_url = _pick(
        flag=database_flag,
        flag_name="--database-url",
        environ=environ,
        env_name=database_env,
        context=context,
        from_context=with_database(stack_url, context.database) if context.database else None,
        default=Choice(environ.get("DATABASE_URL", stack_url), "default"),
    )
    derived = (
        Choice(group_prefix(prefix.value), f"the topic prefix ({prefix.source})")
        if prefix.value
        else Choice(DEFAULT_GROUP_PREFIX, "default")
    )
    groups = (
        Choice(env["LAGMONITOR_GROUP_PREFIXES"], "$LAGMONITOR_GROUP_PREFIXES")
        if "LAGMONITOR_GROUP_PREFIXES" in env
        else derived
    )
    return Target(
        context, source, prefix, database_url, groups, set_aside, given if set_aside else ()
    )


def apply(target: Target, environ: MutableMapping[str, str]) -> None:
    """Write what the context (or the topic prefix) decided into the environment the
    sub-commands' settings read, every service-specific spelling too, as the root
    command writes its flags; what a flag or the operator's environment decided is left
    as it is."""
    if target.prefix.source.startswith("context "):
        override(environ, PREFIX[0], target.prefix.value, PREFIX[1])
    if target.database_url.source.startswith("context "):
        override(environ, DATABASE[0], target.database_url.value, DATABASE[1])
    if target.group_prefixes.source.startswith("the topic prefix"):
        environ["LAGMONITOR_GROUP_PREFIXES"] = target.group_prefixes.value


def in_effect(target: Target, path: Path) -> str | None:
    """A non-default context in effect, for the target line: ``demo
    (deploy/.local/cli-contexts.json)``, ``demo (--context)``; None for the default."""
    if target.context.name == DEFAULT:
        return None
    where = shown(path) if target.context_source == "use" else target.context_source
    return f"{target.context.name} ({where})"


def notice(target: Target, path: Path) -> str | None:
    """The stderr line every command prints while ``use`` saved a non-default context,
    so a command nobody watches (a cron job) never lands in it unsaid."""
    if target.set_aside is not None:
        return (
            f"note: context {target.set_aside} ({shown(path)}) not applied: "
            f"{', '.join(target.given)} given; prefix {target.prefix.value!r}, database "
            f"{_database_said(target.database_url.value)} (--context {target.set_aside} "
            "fills in the rest)"
        )
    if target.context_source != "use" or target.context.name == DEFAULT:
        return None
    return (
        f"note: context {in_effect(target, path)}: prefix {target.prefix.value!r}, database "
        f"{_database_said(target.database_url.value)}; `{USE} default` goes back"
    )


def _database_said(url: str) -> str:
    import psycopg

    try:
        return repr(database_name(url))
    except psycopg.Error:
        return "(a bad DATABASE_URL)"


# -- the file ---------------------------------------------------------------------


def stack_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("SL_STACK_DIR") or ROOT / "deploy" / ".local")


def shown(path: Path) -> str:
    """The contexts file as an operator reads it: relative to the checkout when in it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def contexts_path(environ: Mapping[str, str]) -> Path:
    """``$SL_CLI_CONTEXTS`` (a file of its own, as KUBECONFIG names kubectl's; the tests
    set it so an operator's choice never redirects them), else the stack's."""
    return Path(environ.get("SL_CLI_CONTEXTS") or stack_dir(environ) / CONTEXTS_FILE)


def read_stack_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What the local stack's ``stack.env`` exports (empty when there is none)."""
    path = stack_dir(environ) / "stack.env"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    values = {}
    for raw in text.splitlines():
        line = raw.strip().removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        values[key] = words[0] if words else ""
    return values


def load(path: Path) -> Saved:
    """The saved contexts; none saved yet is ``Saved()``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Saved()
    except (OSError, ValueError) as exc:
        raise ContextError(f"cannot read {path}: {exc}") from exc
    try:
        contexts = {
            name: Context(name, str(body["prefix"]), body.get("database"))
            for name, body in dict(document.get("contexts") or {}).items()
        }
        current = document.get("current")
    except (AttributeError, KeyError, TypeError) as exc:
        raise ContextError(f"{path} is not a contexts file: {exc!r}") from exc
    return Saved(str(current) if current else None, contexts)


def save(path: Path, saved: Saved) -> None:
    """Write the file whole (a reader never sees half of it)."""
    document = {
        "current": saved.current,
        "contexts": {
            c.name: {"prefix": c.prefix, "database": c.database} for c in saved.contexts.values()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".tmp")
    part.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(part, path)


def choose(
    saved: Saved, name: str, prefix: str | None = None, database: str | None = None
) -> Saved:
    """``use NAME`` (with ``--prefix``/``--database``: define or redefine it first)."""
    if not _CONTEXT_NAME.match(name):
        raise ContextError(f"{name!r} is not a context name (letters, digits, . _ -)")
    contexts = dict(saved.contexts)
    if prefix is not None or database is not None:
        if name in BUILT_IN:
            raise ContextError(f"{name!r} is built in; define a context under another name")
        if database is not None and not _DATABASE_NAME.match(database):
            raise ContextError(f"{database!r} is not a database name")
        old = contexts.get(name)
        contexts[name] = Context(
            name,
            prefix if prefix is not None else (old.prefix if old else ""),
            database if database is not None else (old.database if old else None),
        )
    elif name not in saved.all():
        raise ContextError(
            f"context {name!r} is not defined; known: {', '.join(saved.all())} "
            "(define one with --prefix and --database)"
        )
    return Saved(None if name == DEFAULT else name, contexts)


def how_to_reach(saved: Saved, *, prefix: str | None = None, database: str | None = None) -> str:
    """What to type to look there: ``./run cli use demo``, else the flag."""
    name = (
        saved.for_prefix(prefix)
        if prefix is not None
        else saved.for_database(database)
        if database is not None
        else None
    )
    if name is not None:
        return f"{USE} {name}"
    if prefix is not None:
        return f"--prefix {prefix}"
    return f"--database-url .../{database}"
