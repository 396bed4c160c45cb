"""The pipeline inside PostgreSQL: what the ai extension's PL/Python functions call.

The functions' bodies only import `api` and call it; everything else is the worker's own code
(the pipeline, the embedders, the named statements), run through PL/Python's SPI.
"""
