"""Framework adapters for sdready. Each submodule imports its framework; this package does not."""
