"""pytest: drive `pacc rpc` through discover → probe → setup against the testbed's real peers.

Started by crates/pacc-cli/tests/embed.rs, which sets PACC_BIN, PACC_DNS, PACC_CA,
PACC_ADDRESS, PACC_PASSWORD, PACC_DOMAIN, PACC_TAMPERED and PACC_STALL (an address whose
document never arrives). Every result is validated against docs/openrpc.json's schema for
its method, with the independent validator jsonschema.
"""

import json
import os
import pathlib
import time

import jsonschema
import pytest

from pacc_rpc import PaccRpc, RpcError

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPENRPC = json.loads((ROOT / "docs" / "openrpc.json").read_text())
ENV = os.environ


def schema_of(method):
    for m in OPENRPC["methods"]:
        if m["name"] == method:
            return {**m["result"]["schema"], "components": OPENRPC["components"]}
    raise KeyError(method)


def checked(method, result):
    jsonschema.validate(result, schema_of(method))
    return result


@pytest.fixture
def rpc():
    argv = [ENV["PACC_BIN"], "rpc", "--dns", ENV["PACC_DNS"], "--ca-file", ENV["PACC_CA"], "--timeout", "10"]
    client = PaccRpc(argv)
    yield client
    assert client.close() == 0


def test_rpc_discover_returns_the_openrpc_document(rpc):
    doc = rpc.call("rpc.discover")
    assert doc == OPENRPC


def test_discover_then_probe(rpc):
    d = checked("discover", rpc.call("discover", address=ENV["PACC_ADDRESS"]))
    assert d["ok"] is True
    assert d["domain"] == ENV["PACC_DOMAIN"]
    assert set(d["config"]["protocols"]) == {"imap", "pop3", "managesieve"}
    p = checked("probe", rpc.call("probe", address=ENV["PACC_ADDRESS"]))
    assert p["ok"] is True
    assert {s["service"] for s in p["services"]} == {"imap", "pop3", "managesieve"}
    assert all(s["status"] == "reachable" for s in p["services"])


def test_setup_round_trips_sign_in_with_the_password(rpc):
    prepared = checked("setup.start", rpc.call("setup.start", address=ENV["PACC_ADDRESS"]))
    session = prepared["session"]
    assert [g["domain"] for g in prepared["confirmation"]["groups"]] == [ENV["PACC_DOMAIN"]]
    assert ENV["PACC_DOMAIN"] in prepared["confirmation_text"]
    events = [n["params"]["event"]["event"] for n in rpc.notifications if n["params"]["session"] == session]
    assert "discovered" in events and events.count("probed") == 3
    # A wrong domain list is refused and the session stays usable.
    with pytest.raises(RpcError) as e:
        rpc.call("setup.confirm", session=session, domains=["elsewhere.test"])
    assert e.value.code == -32002 and e.value.data["kind"] == "mismatch"
    confirmed = checked("setup.confirm", rpc.call("setup.confirm", session=session, domains=[ENV["PACC_DOMAIN"]]))
    assert confirmed["needs_password"] is True and confirmed["uses_oauth"] is False
    result = checked("setup.sign_in", rpc.call("setup.sign_in", session=session, password=ENV["PACC_PASSWORD"]))
    assert result["ok"] is True, result
    assert sorted(a["service"] for a in result["accounts"]) == ["imap", "managesieve", "pop3"]
    assert all(a["username"] == ENV["PACC_ADDRESS"] for a in result["accounts"])
    assert ENV["PACC_PASSWORD"] not in json.dumps(result)
    # The session is gone after sign-in.
    with pytest.raises(RpcError) as e:
        rpc.call("setup.sign_in", session=session, password="x")
    assert e.value.code == -32003


def test_a_wrong_password_is_a_credentials_failure(rpc):
    session = rpc.call("setup.start", address=ENV["PACC_ADDRESS"])["session"]
    rpc.call("setup.confirm", session=session, accept=True)
    result = checked("setup.sign_in", rpc.call("setup.sign_in", session=session, password="wrong-password"))
    assert result["ok"] is False
    assert {v["class"] for v in result["validations"]} == {"credentials"}


def test_declining_sends_nothing_and_keeps_the_session(rpc):
    session = rpc.call("setup.start", address=ENV["PACC_ADDRESS"])["session"]
    with pytest.raises(RpcError) as e:
        rpc.call("setup.confirm", session=session, accept=False)
    assert e.value.code == -32002 and e.value.data["kind"] == "declined"
    with pytest.raises(RpcError) as e:
        rpc.call("setup.sign_in", session=session, password=ENV["PACC_PASSWORD"])
    assert e.value.code == -32003  # not confirmed
    assert rpc.call("setup.close", session=session) == {"closed": True}


def test_a_digest_mismatch_is_an_integrity_error(rpc):
    with pytest.raises(RpcError) as e:
        rpc.call("setup.start", address=ENV["PACC_TAMPERED"])
    assert e.value.code == -32001
    assert e.value.data["error"]["kind"] == "digest-mismatch"
    assert e.value.data["error"]["class"] == "integrity"
    jsonschema.validate(e.value.data, {**OPENRPC["components"]["schemas"]["Discovery"]})


def test_cancel_stops_a_running_setup(rpc):
    started = time.monotonic()
    request = rpc.send("setup.start", address=ENV["PACC_STALL"])
    time.sleep(0.5)
    # The session id is in the progress notifications.
    sessions = {n["params"]["session"] for n in rpc.notifications}
    assert sessions, "progress notifications name the session"
    for s in sessions:
        rpc.call("cancel", session=s)
    with pytest.raises(RpcError) as e:
        rpc.wait(request)
    assert e.value.code == -32800
    assert time.monotonic() - started < 5, "cancelled well before the 10 s deadline"


def test_usage_errors_are_json_rpc_errors(rpc):
    with pytest.raises(RpcError) as e:
        rpc.call("no.such.method")
    assert e.value.code == -32601
    with pytest.raises(RpcError) as e:
        rpc.call("discover", address="not an address")
    assert e.value.code == -32602


def test_a_saved_account_is_listed_and_exported(rpc):
    session = rpc.call("setup.start", address=ENV["PACC_ADDRESS"])["session"]
    rpc.call("setup.confirm", session=session, accept=True)
    result = rpc.call("setup.sign_in", session=session, password=ENV["PACC_PASSWORD"], save=True, store_secrets="none")
    assert result["ok"] is True
    assert result["saved"]["secrets"] == "none" and result["saved"]["password_stored"] is False
    listed = checked("accounts.list", rpc.call("accounts.list"))
    assert ENV["PACC_ADDRESS"] in [a["address"] for a in listed["accounts"]]
    shown = checked("accounts.show", rpc.call("accounts.show", address=ENV["PACC_ADDRESS"]))
    assert sorted(s["service"] for s in shown["account"]["services"]) == ["imap", "managesieve", "pop3"]
    exported = checked("export", rpc.call("export", address=ENV["PACC_ADDRESS"], format="mbsync"))
    assert "imap.example.test" in exported["text"]
    assert ENV["PACC_PASSWORD"] not in exported["text"]
    assert checked("accounts.remove", rpc.call("accounts.remove", address=ENV["PACC_ADDRESS"])) == {"removed": ENV["PACC_ADDRESS"]}
    with pytest.raises(RpcError) as e:
        rpc.call("accounts.show", address=ENV["PACC_ADDRESS"])
    assert e.value.code == -32004
