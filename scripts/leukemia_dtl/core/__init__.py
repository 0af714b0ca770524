"""Shared by every stage and environment: the vocabulary, user errors, atomic file I/O, the rule runner."""
