"""Uploaded files: where their bytes live (``storage``) and how uploads stream in
(``multipart``). The API objects themselves are in ``runstep.services.files``."""
