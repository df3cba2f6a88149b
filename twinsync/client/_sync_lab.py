"""The blocking client's methods for the strategy lab: campaign forecasts and experiments (a
part of :class:`~twinsync.client.Client`)."""

from __future__ import annotations

from ._lab_results import CampaignForecast, Experiment, ExperimentList
from ._sync_core import ClientCore

__all__ = ["LabMethods"]


class LabMethods(ClientCore):
    """Client methods: the strategy lab: campaign forecasts and experiments."""

    # -- strategy lab ---------------------------------------------------------------------
    def simulate_campaign(
        self,
        offer: str,
        *,
        effect: float | str,
        cost: float = 0.0,
        where: str | None = None,
        fairness_ratio: float | None = None,
    ) -> CampaignForecast:
        """A campaign's forecast: reach, expected saved churners, cost, the split by
        segment with the fairness flags; ``effect`` assumed (0-1) or
        ``"learnt:<experiment id>"``."""
        call = self._calls.simulate_campaign(
            offer, effect=effect, cost=cost, where=where, fairness_ratio=fairness_ratio
        )
        return self._send(call)

    def create_experiment(
        self,
        offer: str,
        *,
        cost: float = 0.0,
        where: str | None = None,
        holdout: float = 0.5,
        days: float = 30.0,
        quiet_days: float | None = None,
    ) -> Experiment:
        """Start a randomised experiment over the twins ``where`` selects (scope write)."""
        call = self._calls.create_experiment(
            offer, cost=cost, where=where, holdout=holdout, days=days, quiet_days=quiet_days
        )
        return self._send(call)

    def list_experiments(self) -> ExperimentList:
        """Every experiment of the brand with its result, newest first."""
        return self._send(self._calls.list_experiments())

    def get_experiment(self, experiment: str) -> Experiment:
        """An experiment, its arms and its result (interim while it runs)."""
        return self._send(self._calls.get_experiment(experiment))

    def stop_experiment(self, experiment: str) -> Experiment:
        """End an experiment now and freeze its result (scope write)."""
        return self._send(self._calls.stop_experiment(experiment))

    def delete_experiment(self, experiment: str) -> Experiment:
        """Delete an experiment and its assignment (scope write); answered as it was."""
        return self._send(self._calls.delete_experiment(experiment))
