"""pytest: the UniFFI Python binding (pacc_ffi) driving discover → probe → setup against the
testbed's real peers. Started by crates/pacc-ffi/tests/python.rs, which puts the built
library next to bindings/python/pacc_ffi.py and sets the PACC_* variables.
"""

import asyncio
import os
import time

import pytest

import pacc_ffi as pacc

ENV = os.environ


def client():
    return pacc.PaccClient(
        pacc.ClientOptions(
            dns_server=ENV["PACC_DNS"],
            ca_files=[ENV["PACC_CA"]],
            timeout_ms=10_000,
            data_dir=ENV["PACC_DATA_DIR"],
        )
    )


class Recorder(pacc.SetupListener):
    def __init__(self):
        self.events = []

    def on_event(self, event):
        self.events.append(event)


def test_discover_and_probe():
    async def main():
        c = client()
        d = await c.discover(ENV["PACC_ADDRESS"])
        assert d.method == "well-known"
        assert d.provider == "Embedded"
        assert sorted(s.service for s in d.services) == ["imap", "managesieve", "pop3"]
        probes = await c.probe(ENV["PACC_ADDRESS"])
        assert all(p.reachable for p in probes), probes
        assert all("PLAIN" in p.mechanisms for p in probes)
        assert {p.usable for p in probes} == {"password"}

    asyncio.run(main())


def test_a_whole_setup_with_the_password():
    async def main():
        listener = Recorder()
        setup = client().setup(ENV["PACC_ADDRESS"], pacc.AuthPreference.AUTO, listener)
        confirmation = await setup.prepare()
        assert [d.domain for d in confirmation.domains] == [ENV["PACC_DOMAIN"]]
        assert sorted(p.service for p in confirmation.plan) == ["imap", "managesieve", "pop3"]
        assert ENV["PACC_DOMAIN"] in confirmation.text
        # A domain list that is not the one shown is refused; the session stays usable.
        with pytest.raises(pacc.PaccError.NotConfirmed) as e:
            setup.confirm_domains(["elsewhere.test"])
        assert e.value.kind == "mismatch"
        info = setup.confirm(True)
        assert info.needs_password and not info.uses_oauth
        assert setup.needs_password()
        result = await setup.sign_in(ENV["PACC_PASSWORD"])
        assert result.ok, result
        assert result.address == ENV["PACC_ADDRESS"]
        assert sorted(s.service for s in result.services) == ["imap", "managesieve", "pop3"]
        assert all(s.method == "password" and s.mechanism == "PLAIN" for s in result.services)
        kinds = [e.event for e in listener.events]
        assert "discovered" in kinds and kinds.count("probed") == 3
        # The session is finished.
        with pytest.raises(pacc.PaccError.WrongState):
            await setup.sign_in(ENV["PACC_PASSWORD"])

    asyncio.run(main())


def test_a_wrong_password_is_classified():
    async def main():
        setup = client().setup(ENV["PACC_ADDRESS"], pacc.AuthPreference.PASSWORD, None)
        await setup.prepare()
        setup.confirm(True)
        result = await setup.sign_in("wrong-password")
        assert not result.ok
        assert {s.failure for s in result.services} == {"credentials"}

    asyncio.run(main())


def test_declining_sends_nothing():
    async def main():
        setup = client().setup(ENV["PACC_ADDRESS"], pacc.AuthPreference.AUTO, None)
        await setup.prepare()
        with pytest.raises(pacc.PaccError.NotConfirmed) as e:
            setup.confirm(False)
        assert e.value.kind == "declined"
        with pytest.raises(pacc.PaccError.WrongState):
            await setup.sign_in(ENV["PACC_PASSWORD"])

    asyncio.run(main())


def test_a_digest_mismatch_is_a_typed_exception():
    async def main():
        c = client()
        with pytest.raises(pacc.PaccError.Integrity) as e:
            await c.discover(ENV["PACC_TAMPERED"])
        assert e.value.kind == "digest-mismatch"
        setup = c.setup(ENV["PACC_TAMPERED"], pacc.AuthPreference.AUTO, None)
        with pytest.raises(pacc.PaccError.Integrity) as e:
            await setup.prepare()
        assert e.value.kind == "digest-mismatch"

    asyncio.run(main())


def test_an_invalid_address_is_invalid_input():
    with pytest.raises(pacc.PaccError.InvalidInput):
        client().setup("not an address", pacc.AuthPreference.AUTO, None)


def test_cancel_ends_a_stalled_setup_at_once():
    async def main():
        setup = client().setup(ENV["PACC_STALL"], pacc.AuthPreference.AUTO, None)
        started = time.monotonic()
        task = asyncio.ensure_future(setup.prepare())
        await asyncio.sleep(0.5)
        setup.cancel()
        with pytest.raises(pacc.PaccError.Cancelled):
            await task
        assert time.monotonic() - started < 5, "well before the 10 s deadline"
        # A cancelled session cannot go on.
        with pytest.raises(pacc.PaccError.WrongState):
            await setup.prepare()

    asyncio.run(main())
