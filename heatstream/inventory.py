"""The fleet inventory: sites, gateways, boilers, and the heat each site displaces.

It is data, not code: a TOML file (see `heatstream/data/inventory.example.toml`)
validated at load. The stream processor uses it to reject a gateway publishing
for a boiler it does not own, to know each boiler's nominal IT power, and to
turn delivered heat into CO2 avoided with the site's own emission factor.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from heatstream.errors import HeatstreamError
from heatstream.schemas.envelope import ID_PATTERN
from heatstream.schemas.signing import MIN_KEY_LENGTH, check_key

EXAMPLE_PATH = Path(__file__).parent / "data" / "inventory.example.toml"

SiteKind = Literal["swimming_pool", "residential", "district_heating", "office", "industrial"]
HeatSource = Literal["gas_boiler", "oil_boiler", "district_heating", "electric", "heat_pump"]


class InventoryError(HeatstreamError, ValueError):
    """The inventory file is missing, unreadable or inconsistent."""


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisplacedHeat(_Item):
    """The heat source a site would use without its digital boilers."""

    source: HeatSource
    efficiency: float = Field(
        gt=0, le=6, description="useful heat per unit of final energy (COP for heat pumps)"
    )
    emission_factor_kg_per_kwh: float = Field(
        ge=0, le=2, description="kg CO2e per kWh of final energy (fuel or electricity)"
    )
    factor_source: str = Field(min_length=3, description="where the emission factor comes from")

    def co2_avoided_kg(self, heat_kwh: float) -> float:
        """Heat delivered / displaced efficiency x emission factor."""
        return heat_kwh / self.efficiency * self.emission_factor_kg_per_kwh


class Site(_Item):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    kind: SiteKind
    timezone: str = "UTC"
    displaced_heat: DisplacedHeat


class Gateway(_Item):
    # Errors never echo their input here: it may be a key.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    id: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)
    boilers: tuple[str, ...] = Field(min_length=1)
    hmac_key: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key the gateway signs its events with (at least"
        f" {MIN_KEY_LENGTH} characters); when set, intake refuses the gateway's unsigned"
        " or badly signed events. Unset: unsigned events are accepted (development only)."
        " See docs/security.md",
    )
    hmac_key_previous: SecretStr | None = Field(
        None,
        description="the key being rotated out: still accepted at intake while listed",
    )

    _check_keys = field_validator("hmac_key", "hmac_key_previous", mode="before")(check_key)

    @model_validator(mode="after")
    def _rotation(self) -> Gateway:
        if self.hmac_key_previous is not None and self.hmac_key is None:
            raise ValueError(
                f"gateway {self.id!r}: hmac_key_previous is set without hmac_key"
                " (during a rotation both are listed; see docs/security.md)"
            )
        return self

    @property
    def hmac_keys(self) -> tuple[SecretStr, ...]:
        """The keys intake accepts for this gateway, current first (empty: unsigned allowed)."""
        return tuple(k for k in (self.hmac_key, self.hmac_key_previous) if k is not None)


class Boiler(_Item):
    id: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)
    nominal_it_kw: float = Field(gt=0, le=5000, description="nominal IT power, kW")
    loop_volume_l: float = Field(500.0, gt=0, description="water volume of the closed loop, L")
    flow_meter_side: Literal["return", "supply"] = Field(
        "return",
        description="where the heat meter's flow sensor sits (its water temperature sets ρ)",
    )


class Inventory(_Item):
    # The outermost model decides whether errors echo their input: gateways hold keys.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    sites: tuple[Site, ...] = Field(min_length=1)
    gateways: tuple[Gateway, ...] = Field(min_length=1)
    boilers: tuple[Boiler, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Inventory:
        for kind, items in (
            ("sites", self.sites),
            ("gateways", self.gateways),
            ("boilers", self.boilers),
        ):
            dupes = [i for i, n in Counter(x.id for x in items).items() if n > 1]
            if dupes:
                raise ValueError(f"{kind}: id {dupes[0]!r} is listed more than once")
        site_ids = {s.id for s in self.sites}
        boiler_site = {b.id: b.site for b in self.boilers}
        for i, b in enumerate(self.boilers):
            if b.site not in site_ids:
                raise ValueError(f"boilers[{i}].site = {b.site!r} is not a site id under [[sites]]")
        owner: dict[str, str] = {}
        for i, g in enumerate(self.gateways):
            if g.site not in site_ids:
                raise ValueError(
                    f"gateways[{i}].site = {g.site!r} is not a site id under [[sites]]"
                )
            for j, boiler in enumerate(g.boilers):
                where = f"gateways[{i}].boilers[{j}] = {boiler!r}"
                if boiler not in boiler_site:
                    raise ValueError(f"{where} is not a boiler id under [[boilers]]")
                if boiler in owner:
                    raise ValueError(f"{where} is already owned by gateway {owner[boiler]!r}")
                if boiler_site[boiler] != g.site:
                    raise ValueError(
                        f"{where} is at site {boiler_site[boiler]!r}, the gateway at {g.site!r}"
                    )
                owner[boiler] = g.id
        orphans = [b.id for b in self.boilers if b.id not in owner]
        if orphans:
            raise ValueError(f"boiler {orphans[0]!r} is owned by no gateway")
        return self

    @cached_property
    def site_by_id(self) -> dict[str, Site]:
        return {s.id: s for s in self.sites}

    @cached_property
    def gateway_by_id(self) -> dict[str, Gateway]:
        return {g.id: g for g in self.gateways}

    @cached_property
    def boiler_by_id(self) -> dict[str, Boiler]:
        return {b.id: b for b in self.boilers}

    @cached_property
    def owner_of(self) -> dict[str, str]:
        """boiler id -> id of the gateway that owns it."""
        return {b: g.id for g in self.gateways for b in g.boilers}

    def owns(self, gateway: str, boiler: str) -> bool:
        return self.owner_of.get(boiler) == gateway

    def owns_all(self, gateway: str, boilers: tuple[str, ...]) -> bool:
        """Whether `gateway` owns every one of `boilers`. The answer for a list is
        remembered (4,096 lists at most): a gateway names the same boilers in frame
        after frame, and the lookups were 1.5 % of the worker."""
        checked = self.owned_lists_checked
        key = (gateway, boilers)
        answer = checked.get(key)
        if answer is None:
            # One pass in C over a frame's hundreds of boilers.
            answer = set(map(self.owner_of.get, boilers)) <= {gateway}
            if len(checked) >= 4096:
                checked.clear()
            checked[key] = answer
        return answer

    @cached_property
    def owned_lists_checked(self) -> dict[tuple[str, tuple[str, ...]], bool]:
        """`owns_all`'s memory: (gateway, boilers) -> answer."""
        return {}


def parse_inventory(text: str, source: str = "<inventory>") -> Inventory:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        from heatstream.schemas.serde import format_validation_error

        raise InventoryError(f"{source}: {format_validation_error(exc)}") from None


def load_inventory(path: Path | None = None) -> Inventory:
    """Load and validate an inventory file (the bundled example when `path` is None)."""
    path = path or EXAMPLE_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {str(path)!r}: {exc.strerror}") from None
    return parse_inventory(text, str(path))


_KINDS: tuple[tuple[SiteKind, DisplacedHeat], ...] = (
    (
        "swimming_pool",
        DisplacedHeat(
            source="gas_boiler",
            efficiency=0.9,
            emission_factor_kg_per_kwh=0.227,
            factor_source="example: natural gas, combustion and upstream (ADEME Base Empreinte)",
        ),
    ),
    (
        "residential",
        DisplacedHeat(
            source="oil_boiler",
            efficiency=0.85,
            emission_factor_kg_per_kwh=0.324,
            factor_source="example: domestic heating oil (ADEME Base Empreinte)",
        ),
    ),
    (
        "district_heating",
        DisplacedHeat(
            source="district_heating",
            efficiency=1.0,
            emission_factor_kg_per_kwh=0.110,
            factor_source="example: network-average district heat (replace with the network's own)",
        ),
    ),
)


def synthetic_inventory(boilers: int, sites: int, nominal_it_kw: float = 100.0) -> Inventory:
    """A deterministic fleet: `sites` sites of rotating kinds, one gateway per site,
    boilers spread round-robin. Used by the simulator and the embedded demo."""
    if sites < 1 or boilers < sites:
        raise InventoryError(
            f"need at least one boiler per site (boilers={boilers}, sites={sites})"
        )
    site_list = []
    for s in range(sites):
        kind, heat = _KINDS[s % len(_KINDS)]
        site_list.append(
            Site(id=f"site-{s + 1:02d}", name=f"{kind} {s + 1}", kind=kind, displaced_heat=heat)
        )
    boiler_list = [
        Boiler(id=f"boiler-{b + 1:04d}", site=site_list[b % sites].id, nominal_it_kw=nominal_it_kw)
        for b in range(boilers)
    ]
    gateways = [
        Gateway(
            id=f"gw-{s + 1:02d}",
            site=site.id,
            boilers=tuple(b.id for b in boiler_list if b.site == site.id),
        )
        for s, site in enumerate(site_list)
    ]
    return Inventory(sites=tuple(site_list), gateways=tuple(gateways), boilers=tuple(boiler_list))


def inventory_toml(inventory: Inventory) -> str:
    """The inventory as a TOML document that `parse_inventory` reads back identically.

    Secrets (gateway HMAC keys) are written out: keep the file private.
    """

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, tuple | list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        text = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'

    lines: list[str] = ["# heatstream inventory (generated)", ""]
    for table, items in (
        ("sites", inventory.sites),
        ("gateways", inventory.gateways),
        ("boilers", inventory.boilers),
    ):
        for item in items:
            lines.append(f"[[{table}]]")
            nested: list[str] = []
            for name in type(item).model_fields:
                v = getattr(item, name)
                if v is None:
                    continue
                if isinstance(v, BaseModel):
                    nested.append(f"[{table}.{name}]")
                    nested.extend(f"{k} = {value(getattr(v, k))}" for k in type(v).model_fields)
                else:
                    lines.append(f"{name} = {value(v)}")
            lines.extend(nested)
            lines.append("")
    return "\n".join(lines)
