"""The explanations' one-line error (zoo.xai.attribution and zoo.xai.whisper raise it)."""


class AttributionError(ValueError):
    """A method or layer that cannot be used with this model; one line."""
