"""The ``twinsync`` console command; see ``twinsync --help``."""

__all__: list[str] = []
