"""Interchange with the tools members already run: lists, CSV, STIX 2.1, MISP, TAXII.

Readers turn a feed into `ImportedAlert`s (node/interchange/model.py); the import
pipeline checks each value, groups values into alerts and publishes them in batches.
Writers turn stored alerts into a format, applying the TLP rules for what may leave.
"""
