"""After `make docs`: the built site holds what it must (an API page naming every public estimator and no raw Sphinx
role, a CLI page naming every command of `aekit --help`, the HTTP page with each route's request and answer, the
chapter notebook executed with its figures), and it opens from site/index.html in a real browser: every entry of the
navigation is clicked from the file itself (no web server), and each page must be a page, not a folder listing,
with every image loaded. Anything missing is said, and the command fails."""

import re
import shutil
import sys
from pathlib import Path

import aekit
from aekit.faces.parser import build_parser

ROLES = re.compile(r":(class|meth|func|data|mod|attr|exc|obj):")


def contents(site: Path) -> tuple[list[str], int]:
    missing = []
    api = (site / "reference" / "python.html").read_text()
    missing += [f"the API page lacks {name}" for name in aekit.__all__ if name.startswith(("AutoEncoder", "Series"))
                and name not in api]  # fmt: skip
    roles = sorted({m.group(0) for m in ROLES.finditer(re.sub(r"<[^>]+>", "", api))})
    if roles:
        missing.append(f"the API page shows raw Sphinx roles {roles}")
    cli = (site / "reference" / "cli.html").read_text()
    missing += [f"the CLI page lacks aekit {name}" for name in build_parser().subcommands if f"aekit {name}" not in cli]
    http = (site / "reference" / "http-api.html").read_text()
    if "request:" not in http or "answer:" not in http or "inputs" not in http:
        missing.append("the HTTP page shows no request and answer shapes")
    chapter = (site / "chapter.html").read_text()
    figures = len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", chapter))
    if figures < 3:
        missing.append(f"the chapter page shows {figures} figures (reconstructions, samples, the latent map: 3 at least)")
    return missing, figures


def browse(site: Path) -> tuple[list[str], int]:
    """Click every navigation entry of site/index.html, opened as a file; what is wrong, and how many pages."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return ["playwright is not installed (make test installs it): the site was not opened in a browser"], 0
    browser_path = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                        None)  # fmt: skip
    if browser_path is None:
        return ["no Chromium on this machine: the site was not opened in a browser"], 0
    problems, seen = [], 0
    links = "nav.md-nav--primary a.md-nav__link[href]"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})  # wide: the whole navigation shows
        start = (site / "index.html").resolve().as_uri()
        page.goto(start)
        targets = page.eval_on_selector_all(links, "els => els.map(e => e.getAttribute('href'))")
        for index, target in enumerate(targets):
            if target.startswith("#"):
                continue
            page.goto(start)
            page.locator(links).nth(index).click()
            page.wait_for_load_state()
            seen += 1
            if not page.url.split("#")[0].endswith(".html") or page.locator("article.md-content__inner").count() == 0:
                problems.append(f"the navigation entry {target!r} opens {page.url}: not a page (a folder listing?)")
                continue
            broken = page.eval_on_selector_all("article img", "els => els.filter(e => !e.complete || "
                                               "e.naturalWidth === 0).map(e => (e.getAttribute('src') || '').slice(0, 60))")  # fmt: skip
            problems += [f"{page.url}: image {src} does not load" for src in broken]
        browser.close()
    return problems, seen


def main() -> None:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "site")
    missing, figures = contents(site)
    problems, pages = browse(site)
    if missing or problems:
        sys.exit("docs: " + "; ".join(missing + problems))
    print(f"docs: {site}/ holds the API page, the CLI page ({len(build_parser().subcommands)} commands), the HTTP "
          f"page's shapes and the chapter with {figures} figures; {pages} pages opened from {site}/index.html in "
          "Chromium, each a page with its images")  # fmt: skip


if __name__ == "__main__":
    main()
