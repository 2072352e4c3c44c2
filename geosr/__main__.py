"""``python -m geosr`` is the ``geosr`` command."""

from geosr.entry import main

main()
