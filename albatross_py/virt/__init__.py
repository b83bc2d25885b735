"""Virtualizers: the backend interface, the solo5 backend and the Solo5 ELF reader.

Kept free of imports so that light users (the stand-in tender reads
``solo5_elf``) do not pull in trio.
"""
