"""``python -m mmtheory``: the command-line interface."""

import sys

from mmtheory.cli import main

sys.exit(main())
