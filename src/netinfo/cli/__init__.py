"""Command-line tools: one module per tool, each with ``main(argv) -> int``."""
