"""MkDocs hooks: the reference pages that are made from the code when the site is built.

- ``reference/cli.md``: the ``--help`` of ``aekit`` and of every command, from the argparse parser itself;
- ``reference/http-api.md``: every route of ``aekit serve``, from the app's OpenAPI schema.
"""

from __future__ import annotations

import os


def cli_reference() -> str:
    """Markdown: ``aekit --help`` and each command's ``--help``, as the parser prints them."""
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal: a fixed width, the same on every machine
    from aekit.faces.parser import build_parser

    parser = build_parser()
    parts = ["## aekit", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, command in parser.subcommands.items():
        parts += [f"## aekit {name}", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def http_reference() -> str:
    """Markdown: a table of the routes, from the OpenAPI schema of ``aekit serve``'s app."""
    from aekit.faces.serve import make_app

    schema = make_app(None).openapi()
    rows = ["| method | path | what it does |", "|---|---|---|"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            what = (operation.get("description") or operation.get("summary") or "").strip().splitlines()
            rows.append(f"| {method.upper()} | `{path}` | {' '.join(what[:2]) if what else ''} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- aekit-cli -->" in markdown:
        markdown = markdown.replace("<!-- aekit-cli -->", cli_reference())
    if "<!-- aekit-http -->" in markdown:
        markdown = markdown.replace("<!-- aekit-http -->", http_reference())
    return markdown
