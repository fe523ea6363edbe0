// A small client for `pacc rpc` (JSON-RPC 2.0 over stdio, one JSON object per line).
//
//   const rpc = new PaccRpc(["pacc", "rpc"]);
//   const prepared = await rpc.call("setup.start", { address: "alice@example.com" });
//   await rpc.call("setup.confirm", { session: prepared.session, accept: true });
//   const result = await rpc.call("setup.sign_in", { session: prepared.session, password });
//   await rpc.close();
//
// `progress` notifications arrive on rpc.notifications and through rpc.onNotification.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

export class RpcError extends Error {
  constructor(error) {
    super(`${error.code}: ${error.message}`);
    this.code = error.code;
    this.data = error.data;
  }
}

export class PaccRpc {
  constructor(argv, { onNotification } = {}) {
    this.child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
    this.nextId = 1;
    this.pending = new Map();
    this.notifications = [];
    this.onNotification = onNotification;
    this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      const message = JSON.parse(line);
      if ("id" in message && ("result" in message || "error" in message)) {
        const slot = this.pending.get(JSON.stringify(message.id));
        if (slot) {
          this.pending.delete(JSON.stringify(message.id));
          if (message.error) slot.reject(new RpcError(message.error));
          else slot.resolve(message.result);
        }
      } else {
        this.notifications.push(message);
        this.onNotification?.(message);
      }
    });
  }

  /** Send a request; returns { id, result } where result is a promise. */
  send(method, params = {}) {
    const id = this.nextId++;
    const result = new Promise((resolve, reject) => this.pending.set(JSON.stringify(id), { resolve, reject }));
    this.child.stdin.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n");
    return { id, result };
  }

  call(method, params = {}) {
    return this.send(method, params).result;
  }

  async close() {
    this.child.stdin.end();
    return this.exited;
  }
}
