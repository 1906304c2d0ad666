"""``python -m helixcode`` is the ``helix`` command."""

from helixcode.cli.app import main

main()
