"""The one error type of the wire layer.

Every malformed, oversized, unknown or otherwise unacceptable input raises
:class:`WireError` with a message fit to send back as a ``Failure`` reply;
no other exception escapes a decoder.
"""


class WireError(ValueError):
    """Input that is not a valid albatross wire message (or frame, or file)."""
