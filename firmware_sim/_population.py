"""Who is in a fleet: households, customers (personas, habits, churn, life) and devices.

The easy fleet's draws come from one generator (``fleet:<seed>``) in a fixed order, and
nothing added since draws from it: every knob of real-world mess has generators of its
own, keyed by seed and customer, household or device, so turning one on changes what it
is about and nothing else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from protocol import PRODUCTS, check_device

from ._churn import CHURN_FLOOR, CHURN_PRECURSOR_MS, ProductChurn, plan_churn, ramp
from ._errors import SimulationError
from ._habits import blend, personalise, sub_persona
from ._knobs import FaultSpec
from ._life import LifeEvent, draw_holidays, draw_life
from ._personas import ALL_PERSONAS, FIRST_NAMES, LAST_NAMES, PERSONAS, Persona
from ._spec import DAY_MS, FleetSpec
from ._zones import Climate, climate_of

__all__ = ["Customer", "Household", "Population", "SimDevice", "populate"]

#: how a shared device attributes its uses
ATTRIBUTIONS = ("per_user", "account", "mixed")


@dataclass(frozen=True)
class Household:
    """A home: its real time zone and the heating it has (ground truth)."""

    household: int
    #: the zone the household lives in (its devices may be set to another: SimDevice.tz)
    tz: str = "UTC"
    #: air conditioning: the thermostat cools in summer
    cooling: bool = False
    #: heat loss relative to an average home (insulation, size)
    heat_loss: float = 1.0
    #: water level (%) at which someone refills the coffee machine
    refill_at: float = 15.0

    @property
    def climate(self) -> Climate:
        """The outdoor climate of the household's zone (seasons, daylight; only used by
        fleets with ``LifeSpec.seasons``)."""
        return climate_of(self.tz)


@dataclass(frozen=True)
class Customer:
    """A person twinned by the brand. ``subject`` is the raw id that must never leave devices.

    A churner disengages before churning, so churn can be predicted from usage: the usage
    multiplier (:meth:`engagement`) is 1 until ``disengage_ms`` (``churn_ms`` − 21 days in
    the easy fleet), declines linearly to ``churn_floor`` (0.25) at ``churn_ms`` (the day
    the customer churns: stops using the product), then decays exponentially (time
    constant 8 h) to ~0 within a day. ``disengage_ms`` may lie before the simulated window
    (the customer is then already declining when it starts); ``disengage_ms ==
    churn_ms``: no warning. Non-churners have ``churn_ms = disengage_ms = None``.
    ``product_churn`` (with :class:`ChurnSpec`) has one ramp per product of a churner,
    or the one product a customer leaves while keeping the others (``partial``).
    """

    subject: str
    household: int
    #: the main persona (a novel one in fleets with PopulationSpec.novel_share)
    persona: str
    churner: bool
    #: the day the customer churns (stops using the product), Unix ms (None: never)
    churn_ms: int | None
    #: the same, in days since the window start (None: never)
    churn_day: float | None = None
    #: when usage starts to decline, ``churn_ms`` − 21 days unless given (None: never)
    disengage_ms: int | None = None
    #: use at the churn date relative to usual
    churn_floor: float = CHURN_FLOOR
    #: per-product churn (empty: every product follows the customer's ramp)
    product_churn: tuple[ProductChurn, ...] = ()
    #: a second persona mixed into the habits (None: a pure persona)
    blend: str | None = None
    #: the share of ``blend`` in the habits (below 0.5: ``persona`` dominates)
    blend_weight: float = 0.0
    #: holidays, illnesses and lasting habit changes (LifeSpec)
    life: tuple[LifeEvent, ...] = ()
    #: the planted habit variant (0 or 1) inside the persona (PopulationSpec.sub_personas;
    #: None: none planted) - ground truth for micro-segments
    sub_persona: int | None = None

    def __post_init__(self) -> None:
        if self.churn_ms is None:
            if self.disengage_ms is not None:
                raise SimulationError("Customer.disengage_ms needs a churn_ms")
        elif self.disengage_ms is None:
            object.__setattr__(self, "disengage_ms", self.churn_ms - CHURN_PRECURSOR_MS)
        elif self.disengage_ms > self.churn_ms:
            raise SimulationError("Customer.disengage_ms must not be after churn_ms")

    def engagement(self, ts_ms: int, product: str | None = None) -> float:
        """The usage multiplier at ``ts_ms`` (1.0: normal usage, ~0: churned), of
        ``product`` when given (its own ramp, if it has one)."""
        if product is not None and self.product_churn:
            for churn in self.product_churn:
                if churn.product == product:
                    return churn.engagement(ts_ms)
        if self.disengage_ms is None or ts_ms < self.disengage_ms:  # the common case, fast
            return 1.0
        assert self.churn_ms is not None
        return ramp(ts_ms, self.disengage_ms, self.churn_ms, self.churn_floor)

    def churns(self, product: str | None = None) -> int | None:
        """When the customer stops using ``product`` (or leaves, when None); None: never."""
        if product is not None:
            for churn in self.product_churn:
                if churn.product == product:
                    return churn.churn_ms
        return self.churn_ms


@dataclass(frozen=True)
class SimDevice:
    """One device of a household, and who uses it (raw subjects, primary user first)."""

    device_id: str
    product: str
    household: int
    users: tuple[str, ...]
    #: fixed device clock offset in ms at the window start (0: accurate clock)
    skew_ms: int
    #: the zone the device is set to (what the agent is configured with); usually the
    #: household's, "UTC" when left on the factory setting (Household.tz is the truth)
    tz: str = "UTC"
    #: clock drift, parts per million (never corrected; see Fleet.clock)
    drift_ppm: float = 0.0
    #: how a shared device attributes uses: "per_user" (right), "account" (everything
    #: under the main user: it cannot tell users apart), "mixed" (some to the wrong one)
    attribution: str = "per_user"


@dataclass(frozen=True)
class Population:
    """Everything :func:`populate` draws."""

    households: list[Household]
    customers: list[Customer]
    devices: list[SimDevice]
    #: raw subject -> the customer's own habits (their persona, blended and varied)
    habits: dict[str, Persona]


def _skew(rng: random.Random, faults: FaultSpec) -> int:
    """A device's fixed clock offset: 0, or minutes to ``max_skew_ms`` either way."""
    if faults.max_skew_ms == 0 or rng.random() >= faults.skew_fraction:
        return 0
    magnitude = rng.randint(min(60_000, faults.max_skew_ms), faults.max_skew_ms)
    return magnitude * rng.choice((-1, 1))


def _customer(
    rng: random.Random, spec: FleetSpec, start: int, household: int, n: int, personas: list[str]
) -> Customer:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    subject = (
        f"{first}.{last}.{n:04d}@example.com"
        if rng.random() < 0.7
        else f"LOY-{n:05d}-{rng.randrange(10**6):06d}"
    )
    persona = rng.choice(personas)
    # both draws always happen, so churn_fraction changes who churns, nothing else
    churns, day = (
        rng.random() < spec.churn_fraction,
        round(rng.uniform(0.3, 1.5) * spec.days, 4),
    )
    if churns:
        return Customer(subject, household, persona, True, start + int(day * DAY_MS), day)
    return Customer(subject, household, persona, False, None, None)


def _household(spec: FleetSpec, n: int) -> Household:
    pop = spec.population
    if not pop.timezones and pop.variation <= 0 and not spec.life.seasons:
        return Household(n)
    rng = random.Random(f"household:{spec.seed}:{n}")
    tz = rng.choice(pop.timezones) if pop.timezones else "UTC"
    cooling = rng.random() < climate_of(tz).cooling
    v = pop.variation
    heat_loss = rng.lognormvariate(0.0, 0.3 * v) if v > 0 else 1.0
    refill = max(3.0, min(45.0, rng.gauss(15.0, 8.0 * v))) if v > 0 else 15.0
    return Household(n, tz, cooling, heat_loss, refill)


def _persona(spec: FleetSpec, c: Customer, n: int) -> tuple[Customer, Persona]:
    """The customer's persona (novel or not, blended or not) and their own habits."""
    pop = spec.population
    persona = c.persona
    if pop.novel_share > 0:
        rng = random.Random(f"novel:{spec.seed}:{n}")
        if rng.random() < pop.novel_share:
            persona = rng.choice(sorted(pop.novel_personas))
    habits = ALL_PERSONAS[persona]
    other, weight = None, 0.0
    if pop.blend_share > 0:
        rng = random.Random(f"blend:{spec.seed}:{n}")
        if rng.random() < pop.blend_share:
            other = rng.choice(sorted(p for p in PERSONAS if p != persona))
            weight = round(rng.uniform(0.2, 0.45), 3)
            habits = blend(habits, PERSONAS[other], weight)
    variant = None
    if pop.sub_personas > 0:
        variant = random.Random(f"sub-persona:{spec.seed}:{n}").randrange(2)
        habits = sub_persona(habits, variant, pop.sub_personas)
    habits = personalise(habits, random.Random(f"habits:{spec.seed}:{n}"), pop.variation)
    c = replace(c, persona=persona, blend=other, blend_weight=weight, sub_persona=variant)
    return c, habits


def _device_extras(spec: FleetSpec, dev: SimDevice, home: Household) -> SimDevice:
    pop, faults = spec.population, spec.faults
    rng = random.Random(f"device-setup:{spec.seed}:{dev.device_id}")
    tz = "UTC" if rng.random() < pop.unset_tz_share else home.tz
    drift = 0.0
    if dev.skew_ms and faults.max_drift_ppm > 0:  # a clock nobody sets also drifts
        drift = round(rng.uniform(-faults.max_drift_ppm, faults.max_drift_ppm), 2)
    attribution = "per_user"
    if len(dev.users) > 1:
        if rng.random() < pop.single_subject_share:
            attribution = "account"
        elif pop.misattribution > 0:
            attribution = "mixed"
    return replace(dev, tz=tz, drift_ppm=drift, attribution=attribution)


def populate(spec: FleetSpec, start: int) -> Population:
    """Households, customers and devices of ``spec`` (window from ``start``)."""
    rng = random.Random(f"fleet:{spec.seed}")
    end = start + int(spec.days * DAY_MS)
    households: list[Household] = []
    customers: list[Customer] = []
    devices: list[SimDevice] = []
    counters = dict.fromkeys(PRODUCTS, 0)
    personas = sorted(PERSONAS)
    products_all = sorted(PRODUCTS)
    household = 0
    while len(devices) < spec.devices:
        household += 1
        households.append(_household(spec, household))
        members = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            n = len(customers) + 1
            customers.append(_customer(rng, spec, start, household, n, personas))
            members.append(customers[-1].subject)
        k = min(rng.choice((1, 2, 2, 3, 4)), spec.devices - len(devices))
        products = rng.sample(products_all, k)
        if household <= len(products_all):  # the first households cover every product
            first = products_all[household - 1]
            products = [first, *[p for p in products if p != first]][:k]
        for product in products:
            counters[product] += 1
            users = tuple(members) if product != "wearable" else (rng.choice(members),)
            skew = _skew(rng, spec.faults)
            device_id = check_device(f"{product}-{counters[product]:04d}")
            devices.append(SimDevice(device_id, product, household, users, skew))
    devices = [_device_extras(spec, d, households[d.household - 1]) for d in devices]
    habits: dict[str, Persona] = {}
    used: dict[str, list[str]] = {c.subject: [] for c in customers}
    for d in devices:
        for user in d.users:
            used[user].append(d.product)
    life = spec.life
    holidays = {
        h.household: draw_holidays(
            random.Random(f"holidays:{spec.seed}:{h.household}"), start, end, life.holidays_per_year
        )
        for h in households
        if life.holidays_per_year > 0
    }
    for n, drawn in enumerate(customers, start=1):
        c, habits[drawn.subject] = _persona(spec, drawn, n)
        if not spec.churn.legacy:
            churn_rng = random.Random(f"churn:{spec.seed}:{n}")
            c = plan_churn(c, sorted(set(used[c.subject])), spec.churn, churn_rng, start, end)
        events = list(holidays.get(c.household, ()))
        if life.illness_per_year > 0 or life.habit_changes_per_month > 0:
            events += draw_life(
                random.Random(f"life:{spec.seed}:{n}"), start, end,
                illness_per_year=life.illness_per_year,
                changes_per_month=life.habit_changes_per_month,
                products=sorted(set(used[c.subject])),
            )  # fmt: skip
        if events:
            c = replace(c, life=tuple(sorted(events, key=lambda e: (e.start_ms, e.kind))))
        customers[n - 1] = c
    return Population(households, customers, devices, habits)
