"""The one error every video backend raises for a file it cannot read."""


class VideoDecodeError(RuntimeError):
    """A video that is missing, empty, truncated or undecodable; the message names the file."""
