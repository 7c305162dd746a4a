"""The quick start, run from a clone: ``python examples/quickstart.py``.

The code lives in the package (``artifacts_py/examples/quickstart.py``) so
that an installed artifacts-py runs the same thing with
``python -m artifacts_py.examples.quickstart``.
"""

import sys

from artifacts_py.examples.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
