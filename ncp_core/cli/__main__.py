"""``python -m ncp_core.cli``: the ``ncp`` command without its script."""

from ncp_core.cli import main

if __name__ == "__main__":
    main(prog_name="ncp")
