"""After `make docs`: the built site holds what it must (an API page naming every public estimator, a CLI page naming
every command of `aekit --help`, the chapter notebook executed with its figures), or this says what is missing."""

import re
import sys
from pathlib import Path

import aekit
from aekit.faces.parser import build_parser

site = Path(sys.argv[1] if len(sys.argv) > 1 else "site")
missing = []
api = (site / "reference" / "python" / "index.html").read_text()
missing += [f"the API page lacks {name}" for name in aekit.__all__ if name.startswith("AutoEncoder") and name not in api]
cli = (site / "reference" / "cli" / "index.html").read_text()
missing += [f"the CLI page lacks aekit {name}" for name in build_parser().subcommands if f"aekit {name}" not in cli]
chapter = (site / "chapter" / "index.html").read_text()
figures = len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", chapter))
if figures < 3:
    missing.append(f"the chapter page shows {figures} figures (reconstructions, samples, the latent map: 3 at least)")
if missing:
    sys.exit("docs: " + "; ".join(missing))
print(f"docs: {site}/ holds the API page, the CLI page ({len(build_parser().subcommands)} commands) and the chapter "
      f"with {figures} figures")
