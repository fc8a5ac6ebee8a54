"""The ERP connector: the reference ERP's tables (``schema``) and the gateway to them.

``gateway.ErpGateway`` is the only way the pipeline reads or writes the ERP; ``errors`` holds
what it raises. A merchant whose ERP differs replaces ``schema`` and ``gateway``.
"""
