"""Python code generated from proto/metadata.proto; regenerate with `make proto` (controller/rpc/regenerate.py), never edit."""
