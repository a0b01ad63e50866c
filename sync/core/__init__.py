"""Shared base: settings, errors, Pub/Sub messages, log format. Imports nothing else from sync."""
