"""The files: UID-hashed relative paths, atomic durable writes, headers read without pixels.

Room: archive/. May import model/; knows no database and no network.
"""
