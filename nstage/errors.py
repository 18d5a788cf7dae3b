"""The one error type that reaches the user as an `error:` line."""


class InputError(Exception):
    """Bad input or arguments: the message says what is wrong and what to do."""
