"""The one exception type for bad input.

Every problem a user can cause (a missing file, wrong shapes, NaN data, an empty grid, an
output size that does not fit the labels) raises :class:`LandscapeError` with a one-line
message that names the problem. The CLI prints it and exits 2; the app shows it with
``st.error``. Anything else escaping is a bug.
"""


class LandscapeError(ValueError):
    """Bad input, described in one line a user can act on."""


class Cancelled(RuntimeError):
    """Long work stopped by its cancel event; ``partial`` holds what was done."""

    def __init__(self, message: str = "cancelled", partial=None):
        super().__init__(message)
        self.partial = partial
