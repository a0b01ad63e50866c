"""The row model: declared columns, parsing, transform, stored shape, storage limits, encoding."""
