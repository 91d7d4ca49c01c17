"""The simulated fleet as arrays: one entry per boiler, drawn once from the seed.

Identity (ids, site, gateway) comes from the inventory; the physical parameters
that an inventory does not hold (exchanger effectiveness, pump, expansion
vessel, how many nodes, which workloads it runs) are drawn per boiler from that
boiler's own PARAMS stream, so they do not change when the fleet grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heatstream.ingest.simulator import demand
from heatstream.ingest.simulator.rng import Purpose, stream
from heatstream.inventory import Inventory

NODE_KW = 2.5  # electrical power of one compute node at full load
WORKLOADS: tuple[str, ...] = ("ai_training", "ai_inference", "rendering", "financial_simulation")


@dataclass(frozen=True)
class Fleet:
    """Static description of every boiler, site and gateway (index = position)."""

    boiler_ids: tuple[str, ...]
    site_ids: tuple[str, ...]
    site_kinds: tuple[str, ...]
    gateway_ids: tuple[str, ...]
    gateway_site: np.ndarray  # (G,) site index of each gateway
    gateway_boilers: tuple[np.ndarray, ...]  # per gateway: boiler indices it owns, in order
    site: np.ndarray  # (B,) site index
    gateway: np.ndarray  # (B,) gateway index
    kind: np.ndarray  # (B,) site kind index (demand.SITE_KINDS)
    flow_meter_return: np.ndarray  # (B,) bool: main flow meter on the return side
    nominal_kw: np.ndarray  # (B,) nominal IT power
    nodes: np.ndarray  # (B,) int
    idle_fraction: np.ndarray  # (B,) node power when idle / at full load
    capture: np.ndarray  # (B,) share of IT heat captured by the water at 65 °C supply
    effectiveness: np.ndarray  # (B,) exchanger ε when clean
    mdot_kg_s: np.ndarray  # (B,) loop mass flow at the pump's usual speed
    pump_speed_pct: np.ndarray  # (B,) the pump's usual speed command
    pump_kw: np.ndarray  # (B,) pump electrical power at that speed
    controls_kw: np.ndarray  # (B,) fans, controls, sensors
    loop_volume_l: np.ndarray  # (B,) water volume of the loop
    boiler_mass_kg: np.ndarray  # (B,) water inside the boiler (its heat exchangers)
    loop_mass_kg: np.ndarray  # (B,) water in the rest of the loop
    vessel_l: np.ndarray  # (B,) expansion vessel volume
    precharge_bar: np.ndarray  # (B,) vessel gas pre-charge, gauge
    nominal_pressure_bar: np.ndarray  # (B,) cold-fill target, gauge, at the initial temperature
    ua_boiler_kw_k: np.ndarray  # (B,) caisson heat loss coefficient
    ua_loop_kw_k: np.ndarray  # (B,) pipe heat loss coefficient
    moisture_pct: np.ndarray  # (B,) floor moisture baseline
    jitter_ms: np.ndarray  # (B,) mean sampling delay after the nominal tick
    workload_mix: np.ndarray  # (B, 4) share of arrivals per workload (WORKLOADS order)

    @property
    def n_boilers(self) -> int:
        return len(self.boiler_ids)

    @property
    def n_sites(self) -> int:
        return len(self.site_ids)

    @property
    def n_gateways(self) -> int:
        return len(self.gateway_ids)

    def boiler_index(self, boiler_id: str) -> int:
        try:
            return self.boiler_ids.index(boiler_id)
        except ValueError:
            raise KeyError(f"no boiler {boiler_id!r} in this fleet") from None

    def gateway_index(self, gateway_id: str) -> int:
        try:
            return self.gateway_ids.index(gateway_id)
        except ValueError:
            raise KeyError(f"no gateway {gateway_id!r} in this fleet") from None


def build_fleet(inventory: Inventory, seed: int) -> Fleet:
    sites = inventory.sites
    site_pos = {s.id: i for i, s in enumerate(sites)}
    for site in sites:
        if site.kind not in demand.SITE_KINDS:
            raise ValueError(f"site {site.id!r}: kind {site.kind!r} is not simulated")
    boilers = inventory.boilers
    boiler_pos = {b.id: i for i, b in enumerate(boilers)}
    gateways = inventory.gateways
    owner = inventory.owner_of
    gateway_pos = {g.id: i for i, g in enumerate(gateways)}
    n = len(boilers)

    columns: dict[str, list[float]] = {}

    def put(name: str, value: float) -> None:
        columns.setdefault(name, []).append(value)

    mixes = np.empty((n, len(WORKLOADS)))
    for b, boiler in enumerate(boilers):
        rng = stream(seed, Purpose.PARAMS, b)
        nominal = boiler.nominal_it_kw
        kind = demand.kind_index(inventory.site_by_id[boiler.site].kind)
        capture = rng.uniform(0.92, 0.97)
        delta_t = rng.uniform(13.0, 17.0)
        speed = float(rng.choice([70.0, 75.0, 80.0, 85.0]))
        volume = boiler.loop_volume_l
        put("nodes", max(1, round(nominal / NODE_KW)))
        put("idle_fraction", rng.uniform(0.22, 0.32))
        put("capture", capture)
        put("effectiveness", demand.EFFECTIVENESS[kind] * rng.uniform(0.95, 1.05))
        # Sized so the design ΔT holds at full power with c_p ≈ 4.185 kJ/(kg·K).
        put("mdot_kg_s", nominal * capture / (4.185 * delta_t))
        put("pump_speed_pct", speed)
        put("pump_kw", 0.012 * nominal * rng.uniform(0.8, 1.2) * (speed / 100.0) ** 3)
        put("controls_kw", 0.2 + 0.008 * nominal * rng.uniform(0.8, 1.2))
        put("loop_volume_l", volume)
        put("boiler_mass_kg", 0.15 * volume)
        put("loop_mass_kg", 0.85 * volume)
        put("vessel_l", 0.05 * volume)
        put("precharge_bar", 1.0)
        put("nominal_pressure_bar", rng.uniform(1.6, 2.0))
        put("ua_boiler_kw_k", 0.0005 * nominal)
        put("ua_loop_kw_k", 0.0003 * nominal)
        put("moisture_pct", rng.uniform(1.5, 5.0))
        put("jitter_ms", rng.uniform(10.0, 40.0))
        mixes[b] = rng.dirichlet(np.full(len(WORKLOADS), 2.0))

    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    arrays["nodes"] = arrays["nodes"].astype(np.int64)
    return Fleet(
        boiler_ids=tuple(b.id for b in boilers),
        site_ids=tuple(s.id for s in sites),
        site_kinds=tuple(s.kind for s in sites),
        gateway_ids=tuple(g.id for g in gateways),
        gateway_site=np.array([site_pos[g.site] for g in gateways], dtype=np.int64),
        gateway_boilers=tuple(
            np.array([boiler_pos[b] for b in g.boilers], dtype=np.int64) for g in gateways
        ),
        site=np.array([site_pos[b.site] for b in boilers], dtype=np.int64),
        gateway=np.array([gateway_pos[owner[b.id]] for b in boilers], dtype=np.int64),
        kind=np.array(
            [demand.kind_index(inventory.site_by_id[b.site].kind) for b in boilers], dtype=np.int64
        ),
        flow_meter_return=np.array([b.flow_meter_side == "return" for b in boilers]),
        nominal_kw=np.array([b.nominal_it_kw for b in boilers], dtype=np.float64),
        workload_mix=mixes,
        **arrays,
    )
