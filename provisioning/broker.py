"""Mosquitto configuration for a fleet: two TLS listeners, certificate identities, and access
rules per device and per role through Mosquitto's dynamic-security plugin.

Every client presents a certificate; its CN becomes its MQTT user name
(``use_identity_as_username``), so no password travels or sits on a device.

* **The devices' listener** (``port``) trusts the fleet CA, and forces each client id to the
  certificate's CN (``use_username_as_clientid``): a device can neither take over the hub's
  persistent session nor knock another device offline by connecting with its id.
* **The hub's listener** (``hub_port``, loopback by default) trusts only the hub CA, which
  signs the hub's and the fleet administrator's certificates and nothing a device holds; the
  hub keeps its own client ids (ingest, counter relay, CLI) there.
* **Access rules** come from the dynamic-security plugin because Mosquitto 2.0's ACL file
  cannot refuse a subscription (any device could join the hub's ``$share`` group and take a
  share of every device's events) and cannot drop a live session. Each device gets a role of
  its own, generated from the contract's channel table (``edge.contract.CHANNELS``): it writes only its own tree on its role's channels
  and event kinds, and subscribes only to its own ``twin/desired``, ``cmd``, ``jobs`` and the
  hub state. Nothing else: no wildcard across devices, no ``$share``, no ``$CONTROL``.
* **Changes at run time** (a device added or revoked) go to the running broker as
  dynamic-security commands from the fleet administrator identity; revoking deletes the
  device's client, which disconnects its live session at once, and its certificate goes on
  the CRL for the next handshake.
* **Limits**: each client's queue is capped in messages and bytes (sized in README for a
  72-hour outage of a normal fleet), packets at the largest channel's size, and the guard
  plugin (``provisioning.guard``) holds each device to its channels' sizes, the retain policy
  and a byte budget.
"""

from __future__ import annotations

import glob
import json
import logging
import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from mimamori.edge import contract
from mimamori.provisioning import guard

log = logging.getLogger(__name__)

HUB_USER = "hub"
ADMIN_USER = "fleet-admin"
DYNSEC_FILE = "dynamic-security.json"
#: extra config files the broker reads at start (a bridge's, see ``provisioning.bridge``)
CONF_DIR = "conf.d"
CONTROL = "$CONTROL/dynamic-security/v1"

#: a normal fleet's 72-hour outage, with room to spare (README, "Security"): per client
#: what every broker this project runs logs (to the journal via stderr)
LOGGING = """\
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages true
"""
MAX_QUEUED_MESSAGES = 100_000
MAX_QUEUED_BYTES = 256 * 1024 * 1024
#: the largest message of any channel (a document still or an inline model job) plus headers
MAX_PACKET_BYTES = 2 * 1024 * 1024

_PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)


class BrokerSetupError(RuntimeError):
    """The broker cannot be configured (plugin missing, control command refused...)."""


def find_dynsec_plugin() -> str:
    for pattern in _PLUGIN_GLOBS:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    raise BrokerSetupError(
        "mosquitto_dynamic_security.so not found: install Debian's `mosquitto` package "
        "(2.0 or newer), which ships it"
    )


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True, "priority": 0}


def device_acls(dev: str, role: str) -> list[dict[str, Any]]:
    """What device ``dev`` of ``role`` may do, derived from the contract's channel table: it
    writes its role's channels in its own tree (events: its role's kinds, one by one) and
    reads the hub's channels in its own tree and the hub state."""
    writes = [
        t
        for c in contract.rows_of(role)
        for t in (
            [contract.event(dev, k) for k in contract.event_kinds_of(role)]
            if c.name == "event"
            else [c.filter(dev)]
        )
    ]
    reads = contract.device_subscriptions(dev)
    return (
        [_acl("publishClientSend", t) for t in writes]
        + [_acl("subscribeLiteral", t) for t in reads]
        + [_acl("publishClientReceive", t) for t in reads]
        + [_acl("unsubscribeLiteral", t) for t in reads]
    )


def _hub_role() -> dict[str, Any]:
    tree = f"{contract.ROOT}/#"
    return {
        "rolename": HUB_USER,
        "textname": "the hub: reads and writes the whole tree, shares the event load",
        "acls": [
            _acl("publishClientSend", tree),
            _acl("publishClientReceive", tree),
            _acl("subscribePattern", tree),
            _acl("subscribePattern", f"$share/{HUB_USER}/{tree}"),
            _acl("unsubscribePattern", "#"),
        ],
    }


def _admin_role() -> dict[str, Any]:
    return {
        "rolename": ADMIN_USER,
        "textname": "provisioning: adds and revokes devices at the running broker",
        "acls": [
            _acl("publishClientSend", f"{CONTROL}"),
            _acl("publishClientReceive", f"{CONTROL}/response"),
            _acl("subscribeLiteral", f"{CONTROL}/response"),
        ],
    }


def device_role_name(dev: str) -> str:
    return f"device-{dev}"


def device_entries(dev: str, role: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dynamic-security client and role of one device."""
    name = device_role_name(dev)
    client = {"username": dev, "textname": f"{role} device", "roles": [{"rolename": name}]}
    return client, {"rolename": name, "textname": role, "acls": device_acls(dev, role)}


def dynsec_config(devices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The plugin's whole state for a fleet inventory (revoked devices have no client)."""
    clients = [
        {"username": HUB_USER, "roles": [{"rolename": HUB_USER}]},
        {"username": ADMIN_USER, "roles": [{"rolename": ADMIN_USER}]},
    ]
    roles = [_hub_role(), _admin_role()]
    for dev, info in sorted(devices.items()):
        if info.get("revoked"):
            continue
        client, role = device_entries(dev, info["role"])
        clients.append(client)
        roles.append(role)
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def render_conf(
    broker_dir: Path,
    ca_dir: Path,
    hub_ca_dir: Path,
    *,
    port: int,
    hub_port: int,
    bind: str = "127.0.0.1",
    hub_bind: str = "127.0.0.1",
    user: str | None = None,
    plugin: str | None = None,
    guard_plugin: Path | None = None,
) -> str:
    broker_dir, ca_dir, hub_ca_dir = broker_dir.resolve(), ca_dir.resolve(), hub_ca_dir.resolve()
    # started as root, Mosquitto switches to `user` (default "mosquitto"); a local demo or
    # test broker started by root keeps root so it can read the fleet's 0600 files
    user_line = f"user {user}\n" if user else ""
    tls = f"""\
certfile {broker_dir / "server.crt"}
keyfile {broker_dir / "server.key"}
require_certificate true
use_identity_as_username true
tls_version tlsv1.2"""
    return f"""\
# mimamori Mosquitto config (generated by `mimamori provision`; edit the generator)
{user_line}per_listener_settings false
allow_anonymous false
# the guard first: it refuses what breaks the contract's limits and defers the rest
{guard.conf_lines(guard_plugin or broker_dir / guard.PLUGIN, [HUB_USER, ADMIN_USER])}\
plugin {plugin or find_dynsec_plugin()}
plugin_opt_config_file {broker_dir / DYNSEC_FILE}

# queued messages for the hub's persistent session survive a broker restart
persistence true
persistence_location {broker_dir / "data"}/
autosave_interval 30
# per client: bounded in count and bytes, so no device can grow the broker without limit
max_queued_messages {MAX_QUEUED_MESSAGES}
max_queued_bytes {MAX_QUEUED_BYTES}
max_inflight_messages 0
max_packet_size {MAX_PACKET_BYTES}
set_tcp_nodelay true

{LOGGING}
# devices: fleet CA; the client id is the certificate's CN, whatever the device asks for
listener {port} {bind}
protocol mqtt
cafile {ca_dir / "ca.crt"}
crlfile {ca_dir / "crl.pem"}
use_username_as_clientid true
{tls}

# the hub and the fleet administrator: hub CA only (no device certificate opens this door)
listener {hub_port} {hub_bind}
protocol mqtt
cafile {hub_ca_dir / "ca.crt"}
{tls}

# a bridge to the prefecture broker, when provisioned (``provisioning.bridge``)
include_dir {broker_dir / CONF_DIR}
"""


def write_broker_files(
    broker_dir: Path,
    ca_dir: Path,
    hub_ca_dir: Path,
    *,
    port: int,
    hub_port: int,
    bind: str,
    devices: dict[str, dict[str, Any]],
    user: str | None = None,
) -> Path:
    """Write mosquitto.conf and the plugin's state into ``broker_dir``; return the conf."""
    broker_dir.mkdir(parents=True, exist_ok=True)
    (broker_dir / "data").mkdir(exist_ok=True)
    (broker_dir / CONF_DIR).mkdir(exist_ok=True)
    conf = broker_dir / "mosquitto.conf"
    plugin = guard.build(broker_dir)
    conf.write_text(
        render_conf(
            broker_dir,
            ca_dir,
            hub_ca_dir,
            port=port,
            hub_port=hub_port,
            bind=bind,
            user=user,
            guard_plugin=plugin,
        )
    )
    state = broker_dir / DYNSEC_FILE
    tmp = state.with_name(state.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(dynsec_config(devices), indent=2))
    tmp.replace(state)
    return conf


class BrokerControl:
    """Dynamic-security commands to a running broker, as the fleet administrator."""

    def __init__(self, host: str, port: int, ca_file: Path, cert_file: Path, key_file: Path):
        self.host, self.port = host, port
        self._tls = (str(ca_file), str(cert_file), str(key_file))

    def run(self, commands: list[dict[str, Any]], timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send ``commands``; return the broker's answers; raise if any was refused.

        OSError when the broker cannot be reached (it then reads the file at its next start).
        """
        done = threading.Event()
        answers: list[dict[str, Any]] = []
        corr = uuid.uuid4().hex
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{ADMIN_USER}-{corr[:8]}", protocol=mqtt.MQTTv5
        )
        ca, cert, key = self._tls
        c.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                answers.extend(json.loads(msg.payload).get("responses", []))
            except ValueError:
                return
            if len(answers) >= len(commands):
                done.set()

        subscribed = threading.Event()
        c.on_message = on_message
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect(self.host, self.port, keepalive=30)
        c.loop_start()
        try:
            c.subscribe(f"{CONTROL}/response", qos=1)
            if not subscribed.wait(timeout):
                raise OSError(f"broker at {self.host}:{self.port} did not answer")
            c.publish(CONTROL, json.dumps({"commands": commands}), qos=1)
            if not done.wait(timeout):
                raise OSError(f"broker at {self.host}:{self.port} did not confirm the change")
        finally:
            c.disconnect()
            c.loop_stop()
        refused = [a for a in answers if a.get("error")]
        if refused:
            raise BrokerSetupError(
                "broker refused: "
                + "; ".join(f"{a.get('command')}: {a.get('error')}" for a in refused)
            )
        return answers


def add_device_commands(dev: str, role: str) -> list[dict[str, Any]]:
    client, r = device_entries(dev, role)
    return [
        {"command": "createRole", **r},
        {"command": "createClient", **client},
    ]


def revoke_device_commands(dev: str) -> list[dict[str, Any]]:
    """Deleting the client disconnects its live sessions; its role goes with it."""
    return [
        {"command": "deleteClient", "username": dev},
        {"command": "deleteRole", "rolename": device_role_name(dev)},
    ]
