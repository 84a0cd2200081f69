"""The index: peewee schema, every write, C-FIND constraints compiled to SQL, plain records out.

Room: index/. The only importer of peewee. May import model/; never archive/, services/ or a face.
"""
