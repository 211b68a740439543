"""Progress as the ecosystem shows it: a bar on a terminal or in a notebook that has widgets, nothing otherwise.

``progress=None`` (the default of the Python API and the CLI) decides by where the output goes: a bar when standard
error is a terminal, or in a Jupyter kernel with ipywidgets (tqdm's notebook bar); no bar when the output goes to a
file or a pipe, where a bar would be hundreds of carriage returns on one line. ``True`` or ``False`` decide for
themselves. tqdm is imported when a bar is made, never at ``import aekit`` (tqdm.auto imported in a notebook without
ipywidgets warns "IProgress not found").
"""

from __future__ import annotations

import contextlib
import sys


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's ZMQ shell)."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except AttributeError:
        return False


def widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def wanted(progress: bool | None) -> bool:
    """Whether to show bars: ``progress`` if given, else on a terminal or in a notebook with widgets."""
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty() or (in_notebook() and widgets())


def bar(iterable=None, *, progress: bool | None = None, **options):
    """A tqdm bar over ``iterable`` (or of ``total=``): the notebook's in a notebook with widgets, the terminal's
    otherwise, disabled where :func:`wanted` says no (it then counts silently)."""
    show = wanted(progress)
    if show and in_notebook() and widgets():
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, disable=not show, dynamic_ncols=True, **options)


@contextlib.contextmanager
def working(what: str, progress: bool | None = None):
    """Around one long call that reports nothing itself (a mixture's EM, a t-SNE): on a terminal a line that counts
    the seconds, so that the command is never silent; elsewhere nothing (the caller logs what it starts)."""
    if not wanted(progress):
        yield
        return
    import threading

    shown = bar(total=None, desc=what, bar_format="{desc}: {elapsed}", progress=True, leave=False)
    done = threading.Event()

    def tick():
        while not done.wait(1.0):
            shown.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        shown.close()
