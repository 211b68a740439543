"""MkDocs hooks: the reference pages that are made from the code when the site is built.

- ``reference/cli.md``: the ``--help`` of ``aekit`` and of every command, from the argparse parser itself;
- ``reference/http-api.md``: every route of ``aekit serve``, from the app's OpenAPI schema, with the shape of its
  request and of its answer;
- every page: the Sphinx roles the docstrings use (``:class:`X```, ``:meth:`~a.b.C.d```) shown as the code they name.
"""

from __future__ import annotations

import json
import os
import re

ROLE = re.compile(r":(?:class|meth|func|data|mod|attr|exc|obj|ref):(<code>)~?([\w.]+?\.)?([\w]+)(</code>)")


def cli_reference() -> str:
    """Markdown: ``aekit --help`` and each command's ``--help``, as the parser prints them."""
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal: a fixed width, the same on every machine
    from aekit.faces.parser import build_parser

    parser = build_parser()
    parts = ["## aekit", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, command in parser.subcommands.items():
        parts += [f"## aekit {name}", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def example(schema: dict, components: dict, depth: int = 0):
    """A small example value of a JSON schema (for the HTTP page): objects by their properties, one element a list."""
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return example(next((o for o in options if o.get("type") != "null"), options[0]), components, depth)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return {}
        return {name: example(value, components, depth + 1) for name, value in schema.get("properties", {}).items()}
    if kind == "array":
        return [example(schema.get("items", {}), components, depth + 1)]
    return {"integer": 0, "number": 0.5, "string": "...", "boolean": False}.get(kind, None)


def http_reference() -> str:
    """Markdown: a table of the routes, and each route's request and answer shapes, from the OpenAPI schema of
    ``aekit serve``'s app."""
    from aekit.faces.serve import make_app

    schema = make_app(None).openapi()
    components = schema.get("components", {}).get("schemas", {})
    rows = ["| method | path | what it does |", "|---|---|---|"]
    shapes = ["", "## Requests and answers", "",
              "Each route's JSON, as an example of its shape (numbers stand for any number, one element for a list of "
              "them); routes that take rows also take a `.npy` body (`Content-Type: application/x-npy`).", ""]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            what = (operation.get("description") or operation.get("summary") or "").strip().splitlines()
            rows.append(f"| {method.upper()} | `{path}` | {' '.join(what[:2]) if what else ''} |")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            answer = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
            answer = answer.get("schema")
            if body is None and answer is None:
                continue
            shapes += [f"### {method.upper()} `{path}`", ""]
            if body is not None:
                shapes += ["request:", "", "```json", json.dumps(example(body, components)), "```", ""]
            if answer is not None:
                shapes += ["answer:", "", "```json", json.dumps(example(answer, components)), "```", ""]
    return "\n".join(rows + shapes) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- aekit-cli -->" in markdown:
        markdown = markdown.replace("<!-- aekit-cli -->", cli_reference())
    if "<!-- aekit-http -->" in markdown:
        markdown = markdown.replace("<!-- aekit-http -->", http_reference())
    return markdown


def on_page_content(html: str, page, config, files) -> str:
    """The docstrings' Sphinx roles as the code they name: ``:class:`~aekit.core.fitted.Fitted``` -> ``Fitted``,
    ``:meth:`aekit.run.runs.Run.score``` -> ``aekit.run.runs.Run.score``."""

    def named(match: re.Match) -> str:
        opening, prefix, name, closing = match.groups()
        short = "~" in match.group(0)
        return f"{opening}{name if short else (prefix or '') + name}{closing}"

    return ROLE.sub(named, html)
