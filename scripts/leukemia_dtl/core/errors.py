"""Errors a user can cause and fix: shown as one paragraph, never as a traceback."""


class UserError(Exception):
    """A problem with the user's data, config or environment, with what to do about it."""
