"""Device link against a real Mosquitto running the generated fleet config."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimamori.edge import contract
from mimamori.edge.config import load_config
from mimamori.edge.service import Service
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device
from tests.mqtt_probe import Probe, wait_until
from tests.running import RunningService


@pytest.fixture
def cfg_path(fleet: Fleet, broker: MosquittoProcess) -> Path:
    return add_device(fleet, "field-01", "wildlife", location="north field")


@pytest.fixture
def service(cfg_path: Path) -> Service:
    return Service(load_config(cfg_path))


def notice(i: int) -> dict[str, str]:
    return {"level": "info", "message": f"n{i}"}


def test_birth_state_and_clean_death(service: Service, hub_probe: Probe) -> None:
    with RunningService(service) as svc:
        wait_until(lambda: hub_probe.on("field-01/birth"), what="birth")
        state = contract.StatePayload.model_validate_json(
            hub_probe.on("field-01/state")[-1].payload
        )
        birth = contract.BirthPayload.model_validate_json(
            hub_probe.on("field-01/birth")[-1].payload
        )
        assert state.online
        assert birth.role == "wildlife" and birth.location == "north field"
        assert birth.bdseq == state.bdseq == svc.link.bdseq

    def last() -> contract.StatePayload:
        return contract.StatePayload.model_validate_json(hub_probe.on("field-01/state")[-1].payload)

    # the death is acknowledged by the broker before stop() returns; the probe hears it after
    wait_until(lambda: last().online is False, 5, "the clean death at the probe")
    assert last().bdseq == birth.bdseq


def test_events_wait_for_hub_then_arrive_in_seq_order(service: Service, hub_probe: Probe) -> None:
    hub_probe.set_hub(False)
    with RunningService(service) as svc:
        wait_until(lambda: svc.link.connected, what="link")
        for i in range(50):
            svc.emit("device.notice", notice(i))
        wait_until(lambda: not svc.link.hub_online, what="hub offline seen")
        assert hub_probe.events("field-01") == []  # held while the hub is offline
        hub_probe.set_hub(True)
        wait_until(lambda: len(hub_probe.events("field-01")) >= 50, what="50 events")
        events = hub_probe.events("field-01")
        assert [e.seq for e in events] == list(range(1, 51))
        assert all(e.hist for e in events)  # recorded while the hub was away
        wait_until(lambda: svc.outbox.depth() == 0, what="outbox drained after PUBACK")


def test_broker_down_events_queue_on_disk_then_deliver_in_order(
    service: Service, hub_probe: Probe, broker: MosquittoProcess
) -> None:
    with RunningService(service) as svc:
        wait_until(lambda: svc.link.hub_online, what="hub online")
        for i in range(10):
            svc.emit("device.notice", notice(i))
        wait_until(lambda: svc.outbox.depth() == 0, what="first drain")
        # as the hub's will would: the broker keeps "hub offline" across its restart, so the
        # backlog waits for the new probe (subscribed first) instead of draining to nobody
        hub_probe.set_hub(False)
        hub_probe.stop()
        broker.stop()
        wait_until(lambda: not svc.link.connected, what="link down")
        for i in range(10, 300):
            svc.emit("device.notice", notice(i))
        assert svc.outbox.depth() == 290
        broker.start()  # waits for both listeners, the devices' and the hub's
        with Probe(broker.host, hub_probe.port, hub_probe.identity).start() as probe:
            wait_until(lambda: len(probe.events("field-01")) >= 290, 20, "backlog delivered")
            seqs = [e.seq for e in probe.events("field-01")]
            assert seqs == sorted(seqs) and set(range(11, 301)) <= set(seqs)
            wait_until(lambda: svc.outbox.depth() == 0, what="outbox empty")


def test_twin_invalid_value_is_reported_and_old_config_kept(
    service: Service, hub_probe: Probe, cfg_path: Path
) -> None:
    def reported() -> list[contract.TwinReported]:
        return [
            contract.TwinReported.model_validate_json(m.payload)
            for m in hub_probe.on("field-01/twin/reported")
        ]

    def desire(version: int, config: dict) -> None:
        hub_probe.client.publish(
            contract.twin_desired("field-01"),
            contract.TwinDesired(version=version, config=config).dumps(),
            qos=1,
            retain=True,
        )

    with RunningService(service) as svc:
        wait_until(lambda: svc.link.connected, what="link")
        desire(1, {"telemetry": {"interval_s": 0}})
        rep = wait_until(reported, what="reported")[-1]
        assert rep.version == 1 and not rep.applied
        assert "telemetry.interval_s" in (rep.error or "") and "(got 0)" in (rep.error or "")
        assert svc.cfg.telemetry.interval_s == 60  # old config still in force
        desire(2, {"telemetry": {"interval_s": 7}})
        wait_until(lambda: len(reported()) >= 2, what="second report")
        rep = reported()[-1]
        assert rep.applied and rep.version == 2
        assert rep.config is not None and rep.config["telemetry"] == {"interval_s": 7.0}
        assert svc.cfg.telemetry.interval_s == 7 and svc.link.twin_version == 2
    # the applied twin survives a restart of the device process
    again = Service(load_config(cfg_path))
    assert again.cfg.telemetry.interval_s == 7 and again.link.twin_version == 2
    again.outbox.close()


def test_commands_reply_with_correlation_data(service: Service, hub_probe: Probe) -> None:
    with RunningService(service) as svc:
        wait_until(lambda: svc.link.connected, what="link")
        corr = hub_probe.command("field-01", "ping")
        bad = hub_probe.command("field-01", "self-destruct")
        snap = hub_probe.command("field-01", "snapshot-config")

        def reply(c: bytes) -> contract.CommandReply | None:
            for m in (
                hub_probe.on("field-01/reply/ping")
                + hub_probe.on("field-01/reply/self-destruct")
                + hub_probe.on("field-01/reply/snapshot-config")
            ):
                if getattr(m.properties, "CorrelationData", None) == c:
                    return contract.CommandReply.model_validate_json(m.payload)
            return None

        pong = wait_until(lambda: reply(corr), what="ping reply").result
        assert pong["pong"] is True and pong["link"]["connects"] >= 1
        refused = wait_until(lambda: reply(bad), what="unknown command reply")
        assert not refused.ok and "unknown command 'self-destruct'" in (refused.error or "")
        config = wait_until(lambda: reply(snap), what="snapshot reply").result["config"]
        assert config["device"]["id"] == "field-01" and "password_file" not in config["mqtt"]


def test_model_update_job_over_mqtt(service: Service, hub_probe: Probe, fleet: Fleet) -> None:
    import base64

    from mimamori.provisioning.signing import sign_model
    from tests.edge.test_updates import tiny_model

    def statuses(job_id: str) -> list[str]:
        return [
            contract.JobStatus.model_validate_json(m.payload).status
            for m in hub_probe.on(f"field-01/jobs/{job_id}/status")
        ]

    def send(job_id: str, model: bytes, version: int) -> None:
        doc = contract.JobDocument(
            job_id=job_id,
            operation="model-update",
            update=sign_model(fleet.signing_key, model, name="monkey", version=version),
            model_b64=base64.b64encode(model).decode(),
        )
        hub_probe.client.publish(contract.job("field-01", job_id), doc.dumps(), qos=1, retain=True)

    with RunningService(service) as svc:
        wait_until(lambda: svc.link.connected, what="link")
        send("update-1", tiny_model(2.0), 1)
        wait_until(lambda: "SUCCEEDED" in statuses("update-1"), what="update applied")
        assert statuses("update-1")[0] == "IN_PROGRESS"
        send("update-2", tiny_model(3.0), 1)  # same version again: a downgrade attempt
        wait_until(lambda: "REJECTED" in statuses("update-2"), what="downgrade rejected")
        assert svc.models.installed_version("monkey") == 1


def test_backoff_grows_exponentially_with_jitter_from_the_first_retry_and_caps() -> None:
    import random

    from mimamori.edge.transport import backoff_delay

    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(120.0, 1.0 * 2 ** (attempt + 1))
        delays = [backoff_delay(attempt, 1.0, 120.0, rng) for _ in range(200)]
        assert all(1.0 <= d <= ceiling for d in delays)
        # spread over the whole range from the first retry: 500 devices do not reconnect in step
        assert max(delays) - min(delays) > (ceiling - 1.0) * 0.8
    # days out of coverage: attempt 1023 and on would overflow 2.0 ** (attempt + 1)
    assert all(1.0 <= backoff_delay(a, 1.0, 120.0, rng) <= 120.0 for a in (1023, 5000, 10**9))
