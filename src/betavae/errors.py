"""The one exception type that reaches a user as a single line instead of a traceback."""


class UserError(Exception):
    """A mistake the user can fix (bad config value, missing data, wrong checkpoint).

    The message is one line that says what is wrong and how to fix it; the apps print it
    and exit non-zero, so it must make sense without a stack trace.
    """
