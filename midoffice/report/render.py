"""The Jinja2 environment of the pages: templates shipped in midoffice/report/templates, HTML
autoescaped (every text and attribute is escaped unless a template says otherwise), and an
undefined name is an error rather than an empty string."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from midoffice.report.charts import STATUS, STATUS_TINT


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("midoffice.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(status=STATUS, tint=STATUS_TINT)
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
