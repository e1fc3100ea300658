"""User-facing errors: one line, naming the file or key at fault. The CLI prints them without a traceback."""


class InspectorError(Exception):
    """A user's mistake or a bad input (file, config value, model). Its message is shown as is."""


class ImageError(InspectorError):
    """An image file that cannot be read or converted."""


class ModelError(InspectorError):
    """A model file that is missing, corrupt, or does not fit what is asked of it."""


class ConfigError(InspectorError):
    """A bad configuration key or value."""
