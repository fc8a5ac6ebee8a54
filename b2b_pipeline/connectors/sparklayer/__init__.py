"""The SparkLayer connector: the API client (client.py), its typed errors (errors.py), the
purchase document (purchases.py) and the wire vocabulary with its [assumed] shapes (wire.py).

Nothing is imported here: the command line imports the errors without paying for the client.
"""
