"""albatross-client: the command-line client and its certificate tooling.

``certs`` generates keys, the root CA and server certificate, CSRs, signs
CSRs into delegation CAs or command leaves, signs leaves on the fly, and
writes CRLs (spec 4.2).
"""
