"""The use cases, free of Dagster: each flow runs one business action end to end against the
typed ports of :mod:`b2b_pipeline.flows.ports`.

- ``customer_sync``, ``price_sync``, ``stock_sync``, ``price_probe``: ERP master data to the
  portal, each ending with the one shared ``recording.record_sync_outcome`` step;
- ``order_intake``: portal purchases to ERP sales orders (and ``order_promises``, what the
  checks prove after every run);
- ``month_end``: the portal-against-ERP reconciliation of a month;
- ``exception_actions``: approve, ignore, retry and resolve queue entries.

``defs/`` (the Dagster assets, checks and sensors), ``cli/`` and ``console/`` call these; none
of them holds a business rule of its own. Importing a flow imports no Dagster.
"""
