"""Entry point of the PyInstaller bundle (see ``packaging/migrator.spec``).

The one-folder bundle holds two executables built from this script, ``migrator`` (the
command line) and ``migrator-gui`` (the desktop app); the program name decides which one
runs.  A third mode exists for the Lasagne importer: it runs the builder script in a child
process started as ``sys.executable .../builder_child.py ARGS`` — in a bundle
``sys.executable`` is this launcher, so that script is run here, by path, like a Python
interpreter would.
"""
from __future__ import annotations

import os
import runpy
import sys

# scripts Migrator itself starts with ``sys.executable SCRIPT ...`` (by file name)
CHILD_SCRIPTS = ("builder_child.py",)


def _child_script(argv: list[str]) -> str | None:
    if len(argv) > 1 and os.path.basename(argv[1]) in CHILD_SCRIPTS and os.path.isfile(argv[1]):
        return argv[1]
    return None


def main() -> int:
    script = _child_script(sys.argv)
    if script is not None:
        sys.argv = sys.argv[1:]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
        return 0
    prog = os.path.basename(sys.executable if getattr(sys, "frozen", False) else sys.argv[0])
    if prog.lower().startswith("migrator-gui"):
        from migrator.gui.app import main as gui_main
        return gui_main()
    from migrator.cli import main as cli_main
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
