"""OpenAPI: the strategy lab: campaign forecasts and experiments (cloud_hub/api/_lab.py)."""

from __future__ import annotations

from typing import Final

from cloud_hub.api._campaign import FAIRNESS_RATIO

from ._schema import (
    FIELD_VALUE,
    MS,
    Operation,
    Param,
    Schema,
    array,
    boolean,
    integer,
    nullable,
    number,
    obj,
    ref,
    string,
)
from ._twins import BRAND, PRODUCT

__all__ = ["OPERATIONS", "SCHEMAS"]

_WHERE = string("a twin query (the language of GET .../twins?where=); null: every twin")
_OFFER = obj(
    {
        "name": string("the offer", minLength=1, maxLength=64),
        "cost": number("its cost per treated twin", minimum=0, maximum=1e9),
    }
)
_INTERVAL = obj({"value": number(), "low": number(), "high": number()})
_ARM = obj(
    {
        "twins": integer("members the index still holds"),
        "churned": integer(),
        "rate": nullable(number("churned / twins")),
        "low": nullable(number("Wilson 95 % interval")),
        "high": nullable(number()),
    }
)
_STAT = obj({"value": number(), "low": number(), "high": number(), "method": string()})
_EXPERIMENT_ID = Param(
    name="experiment",
    where="path",
    schema=string(pattern="^exp-[0-9a-f]{12}$"),
    description="an experiment's id",
    example="exp-0123456789ab",
)

SCHEMAS: Final[dict[str, Schema]] = {
    "Campaign": obj(
        {"offer": _OFFER, "effect": {"anyOf": [number(minimum=0, maximum=1), string()]}},
        {
            "where": nullable(_WHERE),
            "fairness_ratio": number(
                "the fairness rule's ratio (0.8: the four-fifths rule)",
                minimum=0.5,
                exclusiveMaximum=1,
                default=FAIRNESS_RATIO,
            ),
        },
        '`effect`: the share of would-be churners the offer keeps, or "learnt:<experiment id>"',
    ),
    "CampaignForecast": obj(
        {
            "brand": string(),
            "where": nullable(string()),
            "offer": _OFFER,
            "effect": obj(
                {
                    "value": number(),
                    "low": number(),
                    "high": number(),
                    "source": string('"assumed" or "learnt:<experiment id>"'),
                }
            ),
            "population": integer("every twin of the brand in the index"),
            "reach": integer("twins the rule selects"),
            "unscored": integer("reached twins without a churn risk (count 0)"),
            "expected_saved": _INTERVAL,
            "cost": number("reach x the offer's cost"),
            "cost_per_saved": nullable(number()),
            "fairness": obj(
                {"rule": string(), "ratio": number(), "min_members": integer()},
            ),
            "segments": array(
                obj(
                    {
                        "product": PRODUCT,
                        "segment": FIELD_VALUE,
                        "members": integer(),
                        "reached": integer(),
                        "reach_rate": number(),
                        "reach_ratio": nullable(number("against the population's")),
                        "benefit_per_member": number(),
                        "benefit_ratio": nullable(number("against the population's")),
                        "flags": array(
                            string(
                                enum=[
                                    "under_reached",
                                    "over_reached",
                                    "less_benefit",
                                    "more_benefit",
                                    "too_small",
                                ]
                            )
                        ),
                    }
                )
            ),
            "flagged": integer("segments the fairness rule flags"),
        }
    ),
    "NewExperiment": obj(
        {"offer": _OFFER},
        {
            "where": nullable(_WHERE),
            "holdout": number("share kept as holdout", minimum=0.05, maximum=0.95, default=0.5),
            "outcome": obj(
                {},
                {
                    "metric": string(enum=["churned"]),
                    "days": number("the window", minimum=0.0001, maximum=365, default=30),
                    "quiet_days": number(
                        "silence at the window's end that counts as churned (default: "
                        "the window, at most 7)",
                        minimum=0.0001,
                    ),
                },
            ),
        },
    ),
    "Experiment": obj(
        {
            "brand": string(),
            "id": string(),
            "created_ms": MS,
            "where": nullable(string()),
            "offer": _OFFER,
            "holdout": number(),
            "outcome": obj({"metric": string(), "window_ms": integer(), "quiet_ms": integer()}),
            "ends_ms": MS,
            "status": string(enum=["running", "finished"]),
            "finished_ms": nullable(MS),
            "assigned": obj({"treated": integer(), "holdout": integer()}),
            "exposed": integer("treated twins released for exposure"),
            "excluded": integer("selected twins left out: objected to profiling, or erased"),
            "result": nullable(
                obj(
                    {
                        "at_ms": MS,
                        "interim": boolean("true while the experiment runs"),
                        "treated": _ARM,
                        "holdout": _ARM,
                        "uplift": nullable(_STAT),
                        "effect": nullable(_STAT),
                    },
                    description="uplift: holdout rate - treated rate (Newcombe); effect: "
                    "1 - treated rate / holdout rate (Katz), what a forecast can learn",
                )
            ),
        }
    ),
    "Experiments": obj({"brand": string(), "experiments": array(ref("Experiment"))}),
}

_BASE = "/v1/brands/{brand}/lab"
_CAMPAIGN_ERRORS = (
    "bad_json",
    "bad_campaign",
    "bad_where",
    "bad_offer",
    "bad_effect",
    "bad_fairness_ratio",
)
OPERATIONS: Final = (
    Operation(
        method="POST",
        path=f"{_BASE}/simulate",
        operation_id="simulate_campaign",
        summary="Forecast a campaign: reach, expected saved churners, cost, fairness by segment",
        tag="lab",
        scope="read",
        params=(BRAND,),
        body=ref("Campaign"),
        answer=ref("CampaignForecast"),
        errors={
            400: ("bad_brand", *_CAMPAIGN_ERRORS),
            404: ("unknown_experiment",),
            409: ("experiment_running",),
            413: ("too_many_twins",),
            422: ("no_effect_learnt",),
            503: ("index_disabled",),
        },
    ),
    Operation(
        method="POST",
        path=f"{_BASE}/experiments",
        operation_id="create_experiment",
        summary="Start a randomised experiment: treated and holdout twins, assigned",
        tag="lab",
        scope="write",
        params=(BRAND,),
        body=ref("NewExperiment"),
        status=201,
        answer=ref("Experiment"),
        errors={
            400: (
                "bad_brand",
                "bad_json",
                "bad_experiment_request",
                "bad_where",
                "bad_offer",
                "bad_holdout",
                "bad_outcome",
                "bad_days",
                "bad_quiet_days",
            ),
            409: ("too_many_experiments",),
            413: ("too_many_twins",),
            422: ("too_few_twins",),
            503: ("index_disabled",),
        },
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/experiments",
        operation_id="list_experiments",
        summary="Every experiment of the brand with its result, newest first",
        tag="lab",
        scope="read",
        params=(BRAND,),
        answer=ref("Experiments"),
        errors={400: ("bad_brand",)},
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/experiments/{{experiment}}",
        operation_id="get_experiment",
        summary="An experiment, its arms and its result (interim while it runs)",
        tag="lab",
        scope="read",
        params=(BRAND, _EXPERIMENT_ID),
        answer=ref("Experiment"),
        errors={400: ("bad_brand", "bad_experiment"), 404: ("unknown_experiment",)},
    ),
    Operation(
        method="POST",
        path=f"{_BASE}/experiments/{{experiment}}/stop",
        operation_id="stop_experiment",
        summary="End an experiment now and freeze its result",
        tag="lab",
        scope="write",
        params=(BRAND, _EXPERIMENT_ID),
        answer=ref("Experiment"),
        errors={400: ("bad_brand", "bad_experiment"), 404: ("unknown_experiment",)},
    ),
    Operation(
        method="DELETE",
        path=f"{_BASE}/experiments/{{experiment}}",
        operation_id="delete_experiment",
        summary="Delete an experiment and its assignment (answered as it was)",
        tag="lab",
        scope="write",
        params=(BRAND, _EXPERIMENT_ID),
        answer=ref("Experiment"),
        errors={400: ("bad_brand", "bad_experiment"), 404: ("unknown_experiment",)},
    ),
)
