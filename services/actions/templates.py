"""Message templates: one ``<template_id>.yaml`` per template with ``subject`` (email)
and ``body``, rendered by jinja2's sandbox.

Params come from offers written by marketing people and values from social networks
(a comment text, a profile name), so the template engine must not be a way into
Python objects: :class:`~jinja2.sandbox.SandboxedEnvironment` refuses unsafe
attribute access (``__class__``, ``__globals__``, ...) and undefined names fail
loudly instead of rendering empty."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class TemplateProblemError(ValueError):
    """A template that does not exist or does not render; the message is dead-lettered."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


@dataclass(frozen=True)
class MessageTemplate:
    template_id: str
    subject: str
    body: str


class TemplateStore:
    """Templates loaded once from a directory; rendering is pure."""

    def __init__(self, templates: dict[str, MessageTemplate]) -> None:
        self._templates = templates
        self._env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

    @classmethod
    def from_dir(cls, directory: Path) -> TemplateStore:
        if not directory.is_dir():
            raise TemplateProblemError(f"templates directory {directory} does not exist")
        templates = {}
        for path in sorted(directory.glob("*.yaml")):
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(raw, dict) or not isinstance(raw.get("body"), str):
                raise TemplateProblemError(f"{path}: needs a `body` string")
            templates[path.stem] = MessageTemplate(
                path.stem, str(raw.get("subject", "")), raw["body"]
            )
        return cls(templates)

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._templates

    @property
    def ids(self) -> list[str]:
        return sorted(self._templates)

    def render(self, template_id: str, params: dict[str, str]) -> Rendered:
        if not _ID.match(template_id) or template_id not in self._templates:
            raise TemplateProblemError(f"unknown template {template_id!r}")
        template = self._templates[template_id]
        try:
            subject = self._env.from_string(template.subject).render(params)
            body = self._env.from_string(template.body).render(params)
        except TemplateError as exc:
            raise TemplateProblemError(f"template {template_id!r} does not render: {exc}") from exc
        return Rendered(subject.strip(), body)
