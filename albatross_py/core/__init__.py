"""Pure admission logic: the policy tree, the resource map, restart rules.

Names (labels, paths) are part of the wire format and live in ``wire.names``.
"""
