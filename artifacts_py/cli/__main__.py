"""``python -m artifacts_py.cli``: the ``artifacts`` command."""

import sys

from . import main

sys.exit(main())
