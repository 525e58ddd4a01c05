"""Generated garbage at a running device: commands, twin/desired, jobs, hub state. The link
counts and logs each bad message and keeps working."""

from __future__ import annotations

import json
import random

from mimamori.edge import contract
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.mqtt_probe import Probe, wait_until
from tests.reliability.conftest import RunningService, device_config, report


def test_garbage_commands_and_config_never_take_a_device_down(
    fleet: Fleet, broker: MosquittoProcess, hub_probe: Probe, services: list[RunningService]
) -> None:
    running = RunningService(device_config(fleet, "field-01"))
    services.append(running)
    link = running.service.link
    wait_until(lambda: link.hub_online, 15, "online")
    rng = random.Random(9)
    topics = [
        contract.cmd("field-01", "ping"),
        contract.cmd("field-01", "restart-app"),
        contract.cmd("field-01", "no-such-command"),
        contract.twin_desired("field-01"),
        contract.job("field-01", "job-1"),
    ]
    n = 1000
    for _ in range(n):
        topic = rng.choice(topics)
        kind = rng.randrange(4)
        if kind == 0:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        elif kind == 1:
            body = json.dumps({"v": 1, "ts": "now", "args": rng.random()}).encode()
        elif kind == 2:
            body = json.dumps(
                {"v": 1, "ts": contract.iso(contract.utcnow()), "version": -1}
            ).encode()
        else:
            body = json.dumps([rng.random()] * rng.randint(0, 5)).encode()
        hub_probe.client.publish(topic, body, qos=rng.choice([0, 1]))
    wait_until(lambda: link.stats.bad_messages >= n * 0.9, 30, "bad messages counted")
    assert running.thread.is_alive() and link.connected
    corr = hub_probe.command("field-01", "ping")  # and it still answers
    wait_until(
        lambda: any(
            getattr(m.properties, "CorrelationData", None) == corr
            for m in hub_probe.on("field-01/reply/ping")
        ),
        10,
        "ping reply after the garbage",
    )
    report(
        "device fuzz",
        f"{n} generated commands, twin patches and jobs at a running device",
        sent=n,
        stored=0,
        lost=0,
        bad_messages_counted=link.stats.bad_messages,
    )
