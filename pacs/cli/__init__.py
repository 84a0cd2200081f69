"""The operator's face: the `pacs` command (serve, import, stats, verify, reindex, delete, db).

Room: cli/ (a face). May import services/, config and, in `serve` alone, the entry points of the
protocol faces it starts; never imported by anything of ours but `pacs/__main__.py`.
"""
