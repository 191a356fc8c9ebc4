"""Python code generated from proto/metadata.proto; regenerate with `regenerate.py`, never edit."""
