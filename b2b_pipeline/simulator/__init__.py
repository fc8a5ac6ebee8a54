"""The embedded SparkLayer simulator: a real HTTP server on loopback (contracts/sparklayer-api.md).

``server.SimulatorServer`` is the entry point; ``app.Simulator`` the request pipeline;
``handlers/`` the endpoints; ``state`` the in-memory portal and ``persistence`` its file;
``faults`` and ``calls`` the test harness; ``pricing`` the portal's own price rule.
"""
