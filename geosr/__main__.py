"""``python -m geosr`` is the ``geosr`` command."""

from geosr.cli import main

main()
