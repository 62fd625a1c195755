from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.actions.settings import TEMPLATES_DIR
from services.actions.templates import MessageTemplate, TemplateProblemError, TemplateStore

EXAMPLES = Path(__file__).parents[3] / "services" / "rules" / "examples"


def _store(body: str, subject: str = "") -> TemplateStore:
    return TemplateStore({"t": MessageTemplate("t", subject, body)})


def test_renders_params() -> None:
    rendered = _store("Hi {{ name }}, +{{ points }}", "{{ points }} points").render(
        "t", {"name": "Ann", "points": "5"}
    )
    assert (rendered.subject, rendered.body) == ("5 points", "Hi Ann, +5")


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ name.format.__self__ }}",
    ],
)
def test_the_sandbox_refuses_attribute_tricks(body: str) -> None:
    with pytest.raises(TemplateProblemError):
        _store(body).render("t", {"name": "x"})


def test_missing_param_and_unknown_template_fail_loudly() -> None:
    with pytest.raises(TemplateProblemError, match="does not render"):
        _store("{{ missing }}").render("t", {})
    with pytest.raises(TemplateProblemError, match="unknown template"):
        _store("x").render("../etc/passwd", {})


def test_every_template_the_example_offers_use_exists_and_renders() -> None:
    store = TemplateStore.from_dir(TEMPLATES_DIR)
    used = set()
    for path in EXAMPLES.glob("*.yaml"):
        used |= set(re.findall(r"^\s*template:\s*([\w.-]+)", path.read_text(), re.M))
    assert used, "the example offers use templates"
    for template_id in used:
        assert template_id in store
        rendered = store.render(template_id, {"points": "25", "title": "+50", "body": "b"})
        assert rendered.body.strip()
