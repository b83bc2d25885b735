"""albatross-py: a hierarchical, policy-enforcing VM supervisor.

Wire-compatible with robur's albatross (wire version 5).  Layers, from the
bottom: ``wire`` and ``core`` are pure; ``virt`` and ``host`` touch the OS;
``transport``, ``daemons`` and ``client`` are the programs.
"""

__version__ = "0.1.0"
