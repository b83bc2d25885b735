"""The host's side: processes, taps and bridges, FIFOs and files, discovery.

Modules are imported individually; this package re-exports nothing so that
importing one (say ``files``) does not drag in pyroute2.
"""
