"""collsim simulator: cost models, simulation, algorithm selection, calibration, plots and the CLI."""

__all__: list[str] = []
