"""The embedded SparkLayer simulator: a real HTTP server on loopback serving contract version 2
(contracts/sparklayer-api.md), including what the real API refuses.

``server.SimulatorServer`` is the entry point; ``app.Simulator`` the request pipeline;
``handlers/`` the endpoints (one module per area of the contract, ``buyers`` for §7);
``state`` the in-memory portal and its indexes, ``persistence`` its file; ``limits`` the hard
data limits; ``problems`` the RFC 7807 refusals; ``faults`` and ``calls`` the test harness;
``pricing`` the portal's own price rule (first list that prices the SKU).
"""
