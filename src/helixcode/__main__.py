"""``python -m helixcode`` is the ``helix`` command."""

from helixcode.cli.entry import main

main()
