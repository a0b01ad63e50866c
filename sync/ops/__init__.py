"""Operator tools: the CLI, reports, preview, dead letters, verification."""
