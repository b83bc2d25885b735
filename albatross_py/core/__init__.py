"""Pure admission logic: names, the policy tree, the resource map, restart rules."""
