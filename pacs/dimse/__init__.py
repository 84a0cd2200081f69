"""The DICOM network face: the AE, its transport, one module per DIMSE service.

Room: dimse/ (a face). The only importer of pynetdicom. May import services/, model/ and config;
never web/ or cli/.
"""
