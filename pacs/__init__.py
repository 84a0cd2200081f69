"""minipacs: a small DICOM archive (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) on pynetdicom."""

__version__ = "0.1.0"
