"""The example user suites under examples/ run in their own virtual environment, from the
installed wheel (test_plugin.py); this suite must not collect them itself."""

collect_ignore = ["examples"]
