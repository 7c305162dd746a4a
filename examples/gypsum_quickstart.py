"""The gypsum quick start, run from a clone: ``python examples/gypsum_quickstart.py``.

The code lives in the package (``artifacts_py/examples/gypsum_quickstart.py``)
so that an installed artifacts-py runs the same thing with
``python -m artifacts_py.examples.gypsum_quickstart``.
"""

import sys

from artifacts_py.examples.gypsum_quickstart import main

if __name__ == "__main__":
    sys.exit(main())
