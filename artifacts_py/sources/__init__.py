"""Where an artifact's content comes from: one module per kind of source.

:mod:`.base` defines the :class:`Source` protocol; :mod:`.plan` orders an
entry's sources; :mod:`.gobbler_registry`, :mod:`.gobbler_rest` and
:mod:`.tarball` are the kinds. :mod:`artifacts_py.store` runs them.
"""
