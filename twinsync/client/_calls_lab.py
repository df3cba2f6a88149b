"""The request builders of the strategy lab: campaign forecasts and experiments (a part of
:class:`~twinsync.client._calls.Calls`)."""

from __future__ import annotations

from typing import Any

from ._calls_core import CallsCore
from ._lab_results import CampaignForecast, Experiment, ExperimentList
from ._wire import Call, json_result

__all__ = ["LabCalls"]


class LabCalls(CallsCore):
    """The builders of the strategy lab: campaign forecasts and experiments."""

    # -- strategy lab ---------------------------------------------------------------------
    def simulate_campaign(
        self,
        offer: str,
        *,
        effect: float | str,
        cost: float = 0.0,
        where: str | None = None,
        fairness_ratio: float | None = None,
    ) -> Call[CampaignForecast]:
        """A campaign's forecast: ``effect`` assumed (0-1) or ``"learnt:<experiment id>"``."""
        body: dict[str, Any] = {"where": where, "offer": {"name": offer, "cost": cost}}
        body["effect"] = effect
        if fairness_ratio is not None:
            body["fairness_ratio"] = fairness_ratio
        return self._json("simulate_campaign", CampaignForecast, body)

    def create_experiment(
        self,
        offer: str,
        *,
        cost: float = 0.0,
        where: str | None = None,
        holdout: float = 0.5,
        days: float = 30.0,
        quiet_days: float | None = None,
    ) -> Call[Experiment]:
        """Start a randomised experiment over the twins ``where`` selects."""
        outcome: dict[str, Any] = {"metric": "churned", "days": days}
        if quiet_days is not None:
            outcome["quiet_days"] = quiet_days
        body = {
            "where": where,
            "offer": {"name": offer, "cost": cost},
            "holdout": holdout,
            "outcome": outcome,
        }
        return self._json("create_experiment", Experiment, body)

    def list_experiments(self) -> Call[ExperimentList]:
        """Every experiment of the brand, newest first."""
        return Call(self._request("list_experiments"), json_result(ExperimentList))

    def get_experiment(self, experiment: str) -> Call[Experiment]:
        """An experiment and its result (interim while it runs)."""
        request = self._request("get_experiment", values={"experiment": experiment})
        return Call(request, json_result(Experiment))

    def stop_experiment(self, experiment: str) -> Call[Experiment]:
        """End an experiment now and freeze its result."""
        request = self._request(
            "stop_experiment",
            values={"experiment": experiment},
            body=b"{}",
            content_type="application/json",
        )
        return Call(request, json_result(Experiment))

    def delete_experiment(self, experiment: str) -> Call[Experiment]:
        """Delete an experiment and its assignment."""
        request = self._request("delete_experiment", values={"experiment": experiment})
        return Call(request, json_result(Experiment))
