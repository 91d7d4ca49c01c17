"""Per-gateway message authentication: the wire format, the SDK signing what it spools,
intake refusing unsigned, forged and tampered messages of keyed gateways, key rotation,
and replayed copies never counting twice. See docs/security.md."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr, ValidationError

from heatstream.ingest.gateway import Gateway, GatewayConfig
from heatstream.inventory import (
    Gateway as InventoryGateway,
)
from heatstream.inventory import (
    Inventory,
    InventoryError,
    inventory_toml,
    parse_inventory,
    synthetic_inventory,
)
from heatstream.schemas import signing, topics
from heatstream.schemas.compute import JobStarted
from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.serde import decode_raw, encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.settings import KafkaSettings
from heatstream.streams.processor import Emit, Origin, Processor, ProcessorParams
from heatstream.streams.windows import WindowParams
from tests.unit.test_gateway_sdk import FakeBroker, FakeClock, FakeProducer

pytestmark = pytest.mark.reliability

T0 = 1_768_435_200_000
K1 = SecretStr("gw-01-key-2025-" + "a1b2c3d4" * 5)
K2 = SecretStr("gw-01-key-2026-" + "e5f6a7b8" * 5)
WRONG = SecretStr("not-gw-01s-key-" + "0" * 40)
_BASE = synthetic_inventory(boilers=4, sites=2)  # gw-01: boiler-0001, -0003; gw-02: -0002, -0004
PARAMS = ProcessorParams(
    windows=WindowParams(window_ms=60_000, allowed_lateness_ms=20_000, max_gap_ms=5_000),
    sequence_horizon=64,
)


def inventory(**gw01_keys: SecretStr | None) -> Inventory:
    """The base fleet with gw-01's keys set (gw-02 stays unsigned)."""
    gateways = tuple(
        InventoryGateway.model_validate({**dict(g), **gw01_keys}) if g.id == "gw-01" else g
        for g in _BASE.gateways
    )
    return Inventory(sites=_BASE.sites, gateways=gateways, boilers=_BASE.boilers)


def body(seq: int, t0: int, gateway: str = "gw-01", supply: float = 64.0) -> bytes:
    """An unsigned frame as the SDK encodes it."""
    gw = _BASE.gateway_by_id[gateway]
    boilers = list(gw.boilers)
    idx = [b for _ in range(2) for b in range(len(boilers))]
    n = len(idx)
    return encode(TelemetryFrame.model_validate({
        "gateway": gateway, "seq": seq, "site": gw.site, "event_time_ms": t0,
        "ingest_time_ms": t0 + 20, "boilers": boilers, "boiler_idx": idx,
        "dt_ms": [i * 1000 for i in range(2) for _ in boilers], "supply_temp_c": [supply] * n,
        "return_temp_c": [44.0] * n, "flow_lpm": [11.0] * n, "it_power_kw": [17.0] * n,
    }))  # fmt: skip


def signed(seq: int, t0: int, key: SecretStr = K1, **kwargs: Any) -> bytes:
    return signing.sign(body(seq, t0, **kwargs), key)[0]


def run(proc: Processor, msgs: list[tuple[bytes, bytes]], first_offset: int = 0) -> list[Emit]:
    out: list[Emit] = []
    for offset, (key, raw) in enumerate(msgs, start=first_offset):
        out.extend(proc.process(raw, key, Origin("heatstream.raw.events", 0, offset, T0 + offset)))
    return out


def dead_letter(out: list[Emit]) -> DeadLetter:
    assert len(out) == 1 and out[0].topic is topics.DEAD_LETTERS, out
    dl = out[0].event
    assert isinstance(dl, DeadLetter)
    return dl


def assert_no_secret(text: str, raw: bytes) -> None:
    for key in (K1, K2):
        assert key.get_secret_value() not in text
        b = raw[: -signing.SIGNATURE_BYTES] + b"}" if signing.has_trailing_hmac(raw) else raw
        assert signing.mac(key, b) not in text  # the hmac that would pass: a forging oracle


# -- the wire format ------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_the_body_appended_as_the_last_member() -> None:
    b = body(0, T0)
    message, code = signing.sign(b, K1)
    # Reproducible by any gateway vendor from this description alone:
    expected = hmac.new(K1.get_secret_value().encode("utf-8"), b, hashlib.sha256).hexdigest()
    assert code == expected and len(code) == 64
    assert message == b[:-1] + b',"hmac":"' + code.encode() + b'"}'
    assert message[: -signing.SIGNATURE_BYTES] + b"}" == b
    event = decode_raw(message)
    assert event.hmac == code
    assert encode(event.model_copy(update={"hmac": None})) == b  # the SDK's body, exactly


def test_verify_accepts_only_the_exact_signed_bytes_under_a_listed_key() -> None:
    message, code = signing.sign(body(0, T0), K1)
    assert signing.verify(message, [K1])
    assert signing.verify(message, [K2, K1])  # rotation: any listed key
    assert not signing.verify(message, [K2])
    assert not signing.verify(message, [])
    tampered = message.replace(b"64.0", b"65.0", 1)
    assert tampered != message and not signing.verify(tampered, [K1])
    flipped = message[:-3] + (b"0" if message[-3:-2] != b"0" else b"1") + message[-2:]
    assert not signing.verify(flipped, [K1])
    assert not signing.verify(message[:-66] + message[-66:-2].upper() + b'"}', [K1])
    assert not signing.verify(message + b"\n", [K1])
    assert not signing.verify(body(0, T0), [K1])
    hmac_first = b'{"hmac":"' + code.encode() + b'",' + body(0, T0)[1:]
    assert not signing.has_trailing_hmac(hmac_first) and not signing.verify(hmac_first, [K1])


def test_only_json_objects_are_signed() -> None:
    for bad in (b"", b"{}", b"[1]", b"null"):
        with pytest.raises(ValueError, match="JSON object"):
            signing.sign(bad, K1)


# -- keys in the inventory and the gateway configuration -------------------------------


def test_inventory_keys_round_trip_and_list_current_first() -> None:
    inv = inventory(hmac_key=K2, hmac_key_previous=K1)
    gw = inv.gateway_by_id["gw-01"]
    assert [k.get_secret_value() for k in gw.hmac_keys] == [
        K2.get_secret_value(),
        K1.get_secret_value(),
    ]
    assert inv.gateway_by_id["gw-02"].hmac_keys == ()
    again = parse_inventory(inventory_toml(inv)).gateway_by_id["gw-01"]
    assert again.hmac_keys == gw.hmac_keys
    assert K1.get_secret_value() not in repr(inv) and K1.get_secret_value() not in str(gw)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('hmac_key = "tooshort-secret-42"', "gateways[0].hmac_key: is 18 characters long, the minimum is 32"),
        ("hmac_key = 12345678901234567890", "gateways[0].hmac_key: must be a string, not int"),
        (f'hmac_key_previous = "{K1.get_secret_value()}"', "hmac_key_previous is set without hmac_key"),
    ],
)  # fmt: skip
def test_inventory_key_errors_say_what_to_change_without_echoing_the_key(
    edit: str, message: str
) -> None:
    text = inventory_toml(_BASE).replace(
        '[[gateways]]\nid = "gw-01"', f'[[gateways]]\n{edit}\nid = "gw-01"'
    )
    assert edit in text
    with pytest.raises(InventoryError) as exc:
        parse_inventory(text)
    assert message in str(exc.value)
    for secret in ("tooshort-secret-42", "12345678901234567890", K1.get_secret_value()):
        assert secret not in str(exc.value)


def test_an_inventory_error_never_shows_a_gateway_table_holding_a_key() -> None:
    # A missing field's "input" is its whole table: it used to be printed, key first.
    gw01 = '[[gateways]]\nid = "gw-01"\n'
    text = inventory_toml(_BASE).replace(
        gw01, f'[[gateways]]\nhmac_key = "{K1.get_secret_value()}"\n'
    )
    assert K1.get_secret_value() in text
    with pytest.raises(InventoryError) as exc:
        parse_inventory(text)
    assert "gateways[0].id: Field required" in str(exc.value)
    assert K1.get_secret_value()[:8] not in str(exc.value)


def test_an_inventory_built_in_code_never_echoes_a_key_either() -> None:
    data = _BASE.model_dump()
    data["gateways"][0]["hmac_key"] = "short-SECRET-value"
    with pytest.raises(ValidationError) as exc:
        Inventory.model_validate(data)
    assert "hmac_key" in str(exc.value) and "short-SECRET-value" not in str(exc.value)


def test_gateway_config_refuses_a_short_key_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as exc:
        GatewayConfig(
            gateway="gw-01", site="site-01", state_dir=tmp_path, hmac_key="short-secret-99"
        )
    assert "hmac_key" in str(exc.value) and "short-secret-99" not in str(exc.value)
    config = GatewayConfig(gateway="gw-01", site="site-01", state_dir=tmp_path, hmac_key=K1)
    assert K1.get_secret_value() not in repr(config)


# -- the SDK signs what it spools ------------------------------------------------------


def _gateway(tmp_path: Path, broker: FakeBroker, key: SecretStr | None, **kw: Any) -> Gateway:
    config = GatewayConfig(
        gateway="gw-01", site="site-01", state_dir=tmp_path, topic="raw", frame_max_samples=4,
        linger_ms=None, retry_backoff_ms=1, retry_backoff_max_ms=10, close_timeout_ms=2000,
        hmac_key=key,
    )  # fmt: skip
    return Gateway(
        config, KafkaSettings(bootstrap="127.0.0.1:9"),
        producer_factory=lambda: FakeProducer(broker), clock_ms=FakeClock(), **kw,
    )  # fmt: skip


async def _publish(gw: Gateway) -> None:
    for i in range(10):
        for boiler in ("boiler-0001", "boiler-0003"):
            await gw.add_sample(boiler, T0 + 300 * i, {"supply_temp_c": 64.0, "flow_lpm": 11.0})
    await gw.send_compute(
        "compute.job_started", boiler="boiler-0001", event_time_ms=T0 + 100, job_id="j-1",
        workload="rendering", nodes=2,
    )  # fmt: skip
    await gw.flush()


async def test_the_sdk_signs_every_event_and_intake_accepts_them(tmp_path: Path) -> None:
    broker, accepted = FakeBroker(), list[Any]()
    async with _gateway(tmp_path, broker, K1, on_accepted=accepted.extend) as gw:
        await _publish(gw)
    values = [v for _, _, v in broker.messages]
    assert len(values) >= 6
    assert all(signing.verify(v, [K1]) for v in values)
    events = broker.events()
    assert [e.hmac for e in events] == [e.hmac for e in accepted]  # on_accepted sees the hmac
    assert all(e.hmac is not None for e in events)
    assert any(isinstance(e, JobStarted) for e in events)
    proc = Processor(inventory(hmac_key=K1), PARAMS)
    out = run(proc, [(k or b"", v) for _, k, v in broker.messages])
    assert not [e for e in out if e.topic is topics.DEAD_LETTERS]
    assert (proc.counters.frames, proc.counters.compute_events) == (len(values) - 1, 1)


async def test_without_a_key_the_sdk_sends_unsigned_bytes_as_before(tmp_path: Path) -> None:
    broker = FakeBroker()
    async with _gateway(tmp_path, broker, None) as gw:
        await _publish(gw)
    assert all(b'"hmac"' not in v for _, _, v in broker.messages)
    assert all(e.hmac is None for e in broker.events())
    # A keyed gateway's inventory refuses them.
    out = run(
        Processor(inventory(hmac_key=K1), PARAMS), [(k or b"", v) for _, k, v in broker.messages]
    )
    assert {dead.event.reason for dead in out} == {"unauthenticated"}


async def test_send_signs_again_an_event_that_carries_another_hmac(tmp_path: Path) -> None:
    broker = FakeBroker()
    foreign = decode_raw(signed(7, T0, key=WRONG))
    async with _gateway(tmp_path, broker, K1) as gw:
        await gw.send(foreign)
        await gw.flush()
    ((_, _, value),) = broker.messages
    assert signing.verify(value, [K1]) and not signing.verify(value, [WRONG])
    assert value[: -signing.SIGNATURE_BYTES] + b"}" == body(7, T0)


# -- intake ------------------------------------------------------------------------------


def test_keyed_gateway_unsigned_forged_and_tampered_messages_are_refused() -> None:
    cases = [
        (body(0, T0), "unauthenticated", "gw-01:0 carries no hmac"),
        (signed(0, T0, key=WRONG), "bad_signature", "hmac does not verify with the key of gateway 'gw-01'"),
        (signed(0, T0).replace(b"64.0", b"99.0", 1), "bad_signature", "altered after signing"),
        (signed(0, T0).replace(b'"seq":0,', b'"seq":1,').replace(b"gw-01:0", b"gw-01:1"),
         "bad_signature", "gw-01:1"),  # a sequence number moved forward to dodge de-duplication
        (orjson.dumps({"hmac": signed(0, T0)[-66:-2].decode(), **orjson.loads(body(0, T0))}),
         "bad_signature", "must be the object's last member"),
    ]  # fmt: skip
    for raw, reason, text in cases:
        proc = Processor(inventory(hmac_key=K1), PARAMS)
        dl = dead_letter(proc.process(raw, b"gw-01", Origin("t", 0, 9, T0)))
        assert (dl.reason, dl.original, dl.key) == (reason, raw, b"gw-01")
        assert text in dl.error
        assert_no_secret(dl.error, raw)
        # Nothing of it reached the state: the genuine event with that number is new.
        assert run(proc, [(b"gw-01", signed(0, T0))]) == [] and proc.counters.frames == 1


def test_a_gateway_without_a_key_is_accepted_unsigned_or_signed() -> None:
    # Development mode: no key in the inventory, no check (a stray hmac is ignored).
    proc = Processor(inventory(hmac_key=K1), PARAMS)
    assert run(proc, [(b"gw-02", body(0, T0, "gw-02")),
                      (b"gw-02", signing.sign(body(1, T0 + 2000, "gw-02"), WRONG)[0])]) == []  # fmt: skip
    assert proc.counters.frames == 2


def test_rotation_accepts_both_keys_while_both_are_listed() -> None:
    old, new = signed(0, T0, key=K1), signed(1, T0 + 2000, key=K2)
    during = Processor(inventory(hmac_key=K2, hmac_key_previous=K1), PARAMS)
    assert run(during, [(b"gw-01", old), (b"gw-01", new)]) == []
    assert during.counters.frames == 2
    after = Processor(inventory(hmac_key=K2), PARAMS)
    out = run(after, [(b"gw-01", old), (b"gw-01", new)])
    dl = dead_letter(out)
    assert dl.reason == "bad_signature" and dl.original == old
    assert "signed with a key the inventory no longer lists" in dl.error
    assert_no_secret(dl.error, old)
    assert after.counters.frames == 1


def _log(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"gw-01", signed(i, T0 + 2000 * i)) for i in range(n)]


def test_a_replayed_message_is_a_duplicate_and_changes_no_result() -> None:
    log = _log(120)
    copies = [*log[:60], log[10], log[59], *log[60:], log[100]]
    straight = run(Processor(inventory(hmac_key=K1), PARAMS), log)
    proc = Processor(inventory(hmac_key=K1), PARAMS)
    replayed = run(proc, copies)
    assert [encode(e.event) for e in replayed] == [encode(e.event) for e in straight]
    assert any(e.topic is topics.HEAT_WINDOWS for e in straight)
    assert proc.counters.duplicates == 3 and proc.counters.dead_letters == 0


def test_a_replayed_message_older_than_the_horizon_is_a_late_event_never_counted() -> None:
    log = _log(120)
    straight = run(Processor(inventory(hmac_key=K1), PARAMS), log)
    proc = Processor(inventory(hmac_key=K1), PARAMS)
    out = run(proc, [*log, log[3]])  # 116 numbers later: past the 64-event horizon
    late = out[len(straight) :]
    assert [encode(e.event) for e in out[: len(straight)]] == [encode(e.event) for e in straight]
    assert [e.topic for e in late] == [topics.LATE_EVENTS]
    assert late[0].event.reason == "late_event" and late[0].event.original == log[3][1]
    assert "older than the de-duplication horizon" in late[0].event.error


def test_a_copy_under_another_gateways_key_or_name_is_refused() -> None:
    raw = signed(0, T0)
    proc = Processor(inventory(hmac_key=K1), PARAMS)
    assert dead_letter(proc.process(raw, b"gw-02", Origin("t", 0, 0, T0))).reason == "key_mismatch"
    # Claiming to be gw-02 (which needs no key) means changing signed bytes... and the id.
    as_gw02 = raw.replace(b'"gateway":"gw-01"', b'"gateway":"gw-02"').replace(
        b"gw-01:0", b"gw-02:0"
    )
    dl = dead_letter(proc.process(as_gw02, b"gw-02", Origin("t", 0, 1, T0)))
    assert dl.reason == "unauthorised"  # gw-02 serves site-02 and owns other boilers
