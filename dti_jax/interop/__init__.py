"""Readers and converters for checkpoints written by other frameworks."""
