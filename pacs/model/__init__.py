"""PS3.4 as data: the attribute dictionary, levels and keys, identifiers, matching, statuses.

Room: model/ (the bottom). Imports pydicom and nothing of ours outside model/.
"""
