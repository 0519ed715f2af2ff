"""kddbench's conformance kit checks every entry this package registers (see pyproject.toml's
``kddbench_conformance``); run ``pytest`` in this folder after ``pip install -e .``."""
from kddbench.testing import test_plugin_conforms  # noqa: F401  (pytest collects it)
