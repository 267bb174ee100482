"""Errors of tables and windowed tables."""


class TableError(KeyError):
    """A table was used where it has no partition; the message says what to do."""

    def __str__(self) -> str:
        return str(self.args[0])
