"""The daemons: one module per executable (console, vmmd, stats, tls endpoint, ...)."""
