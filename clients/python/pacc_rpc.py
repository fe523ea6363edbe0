"""A small client for `pacc rpc` (JSON-RPC 2.0 over stdio, one JSON object per line).

    with PaccRpc(["pacc", "rpc"]) as rpc:
        prepared = rpc.call("setup.start", address="alice@example.com")
        print(prepared["confirmation_text"])
        rpc.call("setup.confirm", session=prepared["session"], accept=True)
        result = rpc.call("setup.sign_in", session=prepared["session"], password="…")

Requests may overlap (use `send` + `wait`); `progress` notifications are collected in
`notifications` and passed to `on_notification` if given.
"""

import json
import queue
import subprocess
import threading


class RpcError(Exception):
    """A JSON-RPC error response: `code`, `message` and `data` as the server sent them."""

    def __init__(self, error):
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data")


class PaccRpc:
    def __init__(self, argv, env=None, on_notification=None):
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        self.next_id = 1
        self.lock = threading.Lock()
        self.pending = {}
        self.notifications = []
        self.on_notification = on_notification
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            message = json.loads(line)
            if "id" in message and ("result" in message or "error" in message):
                with self.lock:
                    slot = self.pending.get(json.dumps(message["id"]))
                if slot is not None:
                    slot.put(message)
            else:
                self.notifications.append(message)
                if self.on_notification:
                    self.on_notification(message)
        with self.lock:
            for slot in self.pending.values():
                slot.put({"error": {"code": -1, "message": "pacc rpc exited"}})

    def send(self, method, **params):
        """Send a request; returns its id (pass it to `wait`, or to the `cancel` method)."""
        with self.lock:
            request_id = self.next_id
            self.next_id += 1
            self.pending[json.dumps(request_id)] = queue.Queue()
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return request_id

    def wait(self, request_id, timeout=60):
        """The result of request `request_id`, or RpcError."""
        slot = self.pending[json.dumps(request_id)]
        message = slot.get(timeout=timeout)
        with self.lock:
            del self.pending[json.dumps(request_id)]
        if "error" in message:
            raise RpcError(message["error"])
        return message["result"]

    def call(self, method, timeout=60, **params):
        return self.wait(self.send(method, **params), timeout)

    def close(self):
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
