"""Protocol adapters: a pynetdicom event in, a domain call, a DICOM status out.

Layer: the protocol layer with server.py. Handlers are the only place with a broad `except`:
a `DicomError` becomes its status and comment; anything else is logged with its traceback
and answered with the service's "unable to process" status, never pynetdicom's fallback.
"""
