"""Benchmarks of minipacs (`scripts/bench`, `python -m pacs.bench`).

A tool package, not part of the server's layers: it starts servers and clients as processes
and may use subprocess, pynetdicom (as an SCU) and pydicom. The server never imports it.

Subcommands live in modules named `cmd_<name>.py` here, each with `HELP`,
`add_arguments(parser)` and `run(arguments) -> int`; `__main__` finds them by name, so a new
benchmark (e.g. `cmd_index.py` for `scripts/bench index`) needs no change elsewhere.
"""
