"""Draw the small example of every wiring family into ``docs/wirings/img/``.

Each ``_draw_<family>.py`` beside this script defines ``draw(out_dir)``, which
writes one PNG per wiring of that family. This script imports every such
module and calls it. Run from anywhere::

    python docs/wirings/make_drawings.py [--only FAMILY ...] [--out OUT_DIR]

It needs matplotlib and networkx (``pip install 'ncp-core[plot]'``) and the
plugins installed; plugins that are only checked out are found under
``plugins/`` as a fallback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _add_checked_out_plugins() -> None:
    """Make packages under ``plugins/*/`` importable even if not installed."""
    for plugin in sorted((REPO / "plugins").glob("ncp-wiring-*")):
        if plugin.is_dir() and str(plugin) not in sys.path:
            sys.path.append(str(plugin))
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))


def draw_all(out_dir: Path, only: list[str] | None = None) -> list[str]:
    """Call ``draw(out_dir)`` of every ``_draw_*.py`` module; their names.

    ``only`` restricts the run to the modules ``_draw_<family>`` it names.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    _add_checked_out_plugins()
    names = []
    for path in sorted(HERE.glob("_draw_*.py")):
        if only and path.stem.removeprefix("_draw_") not in only:
            continue
        module = importlib.import_module(path.stem)
        module.draw(out_dir)
        names.append(path.stem)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "img")
    parser.add_argument(
        "--only", nargs="+", metavar="FAMILY", help="draw only these families"
    )
    args = parser.parse_args(argv)
    for name in draw_all(args.out, args.only):
        print(f"{name}: done")
    print(f"drawings written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
