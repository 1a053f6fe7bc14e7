"""Allows ``python -m nnslim``."""

import sys

from nnslim.cli import main

sys.exit(main())
