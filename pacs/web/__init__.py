"""The HTTP face: DICOMweb (QIDO-RS, WADO-RS, STOW-RS, WADO-URI) over the shared services.

Room: web/. The only room that imports Starlette, uvicorn and python-multipart. Start with
`pacs.web.app.create_app` (the route lists it mounts, how to add more) and `pacs.web.server`.
"""
