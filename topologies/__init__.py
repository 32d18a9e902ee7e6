"""collsim topologies: networkx builders, spec strings, routing, files, drawing and emulation."""

__all__: list[str] = []
