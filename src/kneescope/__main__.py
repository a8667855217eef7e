"""``python -m kneescope``."""

import sys

from kneescope.cli.app import main

sys.exit(main())
