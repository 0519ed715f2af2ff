"""kddbench's built-in plugins.

Each module here is registered through the ``kddbench`` entry-point group in pyproject.toml,
exactly like a third party's plugin: the core never imports this package.  Registration modules
(``datasets``, ``architectures``, ...) import no torch; the implementations they point at do.
"""
