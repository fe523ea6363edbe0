// node --test: drive `pacc rpc` through discover → probe → setup against the testbed's real
// peers (started by crates/pacc-cli/tests/embed.rs, which sets the PACC_* variables).
import { test } from "node:test";
import assert from "node:assert/strict";
import { PaccRpc, RpcError } from "./pacc-rpc.mjs";

const env = process.env;
const argv = [env.PACC_BIN, "rpc", "--dns", env.PACC_DNS, "--ca-file", env.PACC_CA, "--timeout", "10"];

// Every test stops its server, also when it fails.
function server(t) {
  const rpc = new PaccRpc(argv);
  t.after(() => rpc.close());
  return rpc;
}

test("discover, probe, then a whole setup with the password", async (t) => {
  const rpc = server(t);
  const d = await rpc.call("discover", { address: env.PACC_ADDRESS });
  assert.equal(d.ok, true, JSON.stringify(d.error));
  assert.deepEqual(Object.keys(d.config.protocols).sort(), ["imap", "managesieve", "pop3"]);
  const p = await rpc.call("probe", { address: env.PACC_ADDRESS });
  assert.equal(p.ok, true);
  assert.deepEqual(p.services.map((s) => s.status), ["reachable", "reachable", "reachable"]);

  const prepared = await rpc.call("setup.start", { address: env.PACC_ADDRESS });
  assert.deepEqual(prepared.confirmation.groups.map((g) => g.domain), [env.PACC_DOMAIN]);
  const confirmed = await rpc.call("setup.confirm", { session: prepared.session, accept: true });
  assert.equal(confirmed.needs_password, true);
  const result = await rpc.call("setup.sign_in", { session: prepared.session, password: env.PACC_PASSWORD });
  assert.equal(result.ok, true, JSON.stringify(result.not_set_up));
  assert.deepEqual(result.accounts.map((a) => a.service).sort(), ["imap", "managesieve", "pop3"]);
  assert.ok(!JSON.stringify(result).includes(env.PACC_PASSWORD), "the password is not echoed");
  const progress = rpc.notifications.filter((n) => n.params.session === prepared.session);
  assert.ok(progress.some((n) => n.params.event.event === "signed-in"));
});

test("a digest mismatch is error -32001 with kind digest-mismatch", async (t) => {
  const rpc = server(t);
  await assert.rejects(rpc.call("setup.start", { address: env.PACC_TAMPERED }), (e) => {
    assert.ok(e instanceof RpcError);
    assert.equal(e.code, -32001);
    assert.equal(e.data.error.kind, "digest-mismatch");
    assert.equal(e.data.error.class, "integrity");
    return true;
  });
});

test("cancel by request id ends a stalled discovery at once", async (t) => {
  const rpc = server(t);
  const started = Date.now();
  const { id, result } = rpc.send("discover", { address: env.PACC_STALL });
  const outcome = result.then(
    (r) => ({ r }),
    (e) => ({ e }),
  );
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await rpc.call("cancel", { id }), { cancelled: true });
  const { e } = await outcome;
  assert.equal(e?.code, -32800);
  assert.ok(Date.now() - started < 5000, "well before the 10 s deadline");
});

test("cancel by request id ends a stalled setup.start and frees its session", async (t) => {
  const rpc = server(t);
  const started = Date.now();
  const { id, result } = rpc.send("setup.start", { address: env.PACC_STALL });
  const outcome = result.then(
    (r) => ({ r }),
    (e) => ({ e }),
  );
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await rpc.call("cancel", { id }), { cancelled: true });
  const { e } = await outcome;
  assert.equal(e?.code, -32800, "the request itself answers cancelled");
  assert.ok(Date.now() - started < 5000);
  const session = rpc.notifications.find((n) => n.params?.session)?.params.session;
  assert.ok(session, "progress named the session");
  // Nothing is left busy: the session is gone.
  await assert.rejects(rpc.call("setup.close", { session }), (err) => err.code === -32003);
});
