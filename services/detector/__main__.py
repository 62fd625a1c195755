"""``python -m services.detector``: the detector's worker and read model."""

from services.detector.cli import main

main()
