"""The TLS endpoint's certificate logic: from a verified client chain to a request.

``chain`` is pure (no sockets): it turns the chain OpenSSL verified during the
handshake into the request name, the delegated policies and the command
(spec 4.3), and optionally checks the chain against certificate revocation
lists (our addition; albatross has none, spec 4.6).
"""
