"""collsim simulator: cost models, simulation, algorithm selection, calibration, plots and the CLI.

``sim.layout_of(G)`` (:func:`sim.layout.layout_of`) is re-exported here, loaded on first use so
``import sim`` stays light.
"""

__all__ = ["layout_of"]


def __getattr__(name: str):
    if name == "layout_of":
        from sim.layout import layout_of

        return layout_of
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
