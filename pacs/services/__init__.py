"""Protocol-neutral use cases: store (ingest), find, retrieve, operations, access, metrics.

Room: services/. May import model/, index/, archive/ and config; never pynetdicom, an HTTP
framework, or a face.
"""
