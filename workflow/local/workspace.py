"""The local workspace: what local mode keeps between processes.

A workspace is a folder (default: the user's data dir, ``autolabel/workspace``) holding

- ``state.sqlite``: every item of the template's DynamoDB tables (frame ledger, task tokens, ...),
  one row per item, in DynamoDB's JSON form;
- ``s3/<bucket>/<key>``: every object of the template's buckets (the runs' records under ``runs/``,
  the async endpoint's outputs, the published datasets);
- ``runs/<run_id>.json``: the local registry of runs (the request, the command line, the status, the
  counts) that ``autolabel runs`` lists and ``autolabel resume`` restarts.

How it stays honest: moto still evaluates every DynamoDB request (conditions, update expressions,
transactions), and the workspace is *write-through* rather than snapshotted. Each DynamoDB request
runs inside one SQLite write transaction (``BEGIN IMMEDIATE``, a lock across processes): the items
the request names are loaded from SQLite into moto first, moto applies the request, and the same
items are written back before the commit. Two local runs in two processes on one workspace therefore
see each other's claims at the moment they claim, with DynamoDB's conditional semantics, and a
process killed at any point leaves at most its one uncommitted request unwritten. S3 objects are
written to files (write to a temporary name, then rename) as moto stores them, so a killed run
leaves every object it had finished writing. The input frames are not copied into the workspace:
they stay in the input folder and are read into local S3 again by the process that needs them.

What does not persist: Step Functions executions and in-flight asynchronous inferences. A run is
resumed by starting the state machine again with the same run id and request; the run's records
(``counts/<batch>.json``, the ledger's claims) make that second execution finish only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

APP = "autolabel"


def default_root() -> Path:
    """``$AUTOLABEL_WORKSPACE``, else the user's data dir (platformdirs), ``.../autolabel/workspace``."""
    env = os.environ.get("AUTOLABEL_WORKSPACE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP, appauthor=False)) / "workspace"


def _keys_of(action: str, body: dict[str, Any], hash_key: Any) -> list[tuple[str, str]]:
    """(table, hash key as DynamoDB JSON) of every item a request reads or writes."""
    found: list[tuple[str, str]] = []

    def add(table: str | None, key: dict[str, Any] | None, item: dict[str, Any] | None = None) -> None:
        if not table:
            return
        name = hash_key(table)
        if name is None:
            return
        source = key if key is not None else item
        if source and name in source:
            found.append((table, json.dumps({name: source[name]}, sort_keys=True)))

    if action in ("GetItem", "UpdateItem", "DeleteItem"):
        add(body.get("TableName"), body.get("Key"))
    elif action == "PutItem":
        add(body.get("TableName"), None, body.get("Item"))
    elif action in ("TransactWriteItems", "TransactGetItems"):
        for entry in body.get("TransactItems", []):
            for op in entry.values():
                add(op.get("TableName"), op.get("Key"), op.get("Item"))
    elif action in ("BatchWriteItem", "BatchGetItem"):
        for table, ops in body.get("RequestItems", {}).items():
            if isinstance(ops, dict):  # BatchGetItem
                for key in ops.get("Keys", []):
                    add(table, key)
                continue
            for op in ops:
                put, delete = op.get("PutRequest"), op.get("DeleteRequest")
                if put:
                    add(table, None, put.get("Item"))
                if delete:
                    add(table, delete.get("Key"))
    return found


READ_ONLY = {"GetItem", "BatchGetItem", "TransactGetItems", "DescribeTable", "ListTables"}
WHOLE_TABLE = {"Scan", "Query"}


class Workspace:
    """One workspace folder; :class:`~workflow.local.cloud.LocalCloud` binds it to moto."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "runs").mkdir(exist_ok=True)
        (self.root / "s3").mkdir(exist_ok=True)
        self._db = sqlite3.connect(
            self.root / "state.sqlite", timeout=60, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS items (tbl TEXT NOT NULL, pk TEXT NOT NULL, item TEXT NOT NULL,"
            " PRIMARY KEY (tbl, pk))"
        )
        self._lock = threading.RLock()  # one request at a time in this process (moto is not thread safe)
        self._restoring = threading.local()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- DynamoDB ---------------------------------------------------------------------------------
    def items(self, table: str) -> Iterator[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT item FROM items WHERE tbl = ?", (table,)).fetchall()
        for (item,) in rows:
            yield json.loads(item)

    @contextlib.contextmanager
    def dynamodb_request(self, action: str, body: dict[str, Any], backend: Any) -> Iterator[None]:
        """Run one DynamoDB request against moto with the items it names synced in and out."""

        def hash_key(table: str) -> str | None:
            try:
                return str(backend.get_table(table).hash_key_attr)
            except Exception:  # noqa: BLE001 - a table moto does not know: moto answers the error
                return None

        keys = _keys_of(action, body, hash_key)
        with self._lock:
            if not keys:
                if action in WHOLE_TABLE:
                    self._load_table(backend, body.get("TableName", ""))
                yield
                return
            write = action not in READ_ONLY
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                for table, key in keys:
                    self._load(backend, table, key)
                yield
                if write:
                    for table, key in keys:
                        self._save(backend, table, key)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _load(self, backend: Any, table: str, key: str) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        row = self._db.execute("SELECT item FROM items WHERE tbl = ? AND pk = ?", (table, key)).fetchone()
        tbl = backend.get_table(table)
        if row is not None:
            tbl.put_item(json.loads(row[0]), overwrite=True)
        else:
            ((_, value),) = json.loads(key).items()
            if tbl.get_item(DynamoType(value)) is not None:
                tbl.delete_item(DynamoType(value), None)

    def _save(self, backend: Any, table: str, key: str) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        ((_, value),) = json.loads(key).items()
        item = backend.get_table(table).get_item(DynamoType(value))
        if item is None:
            self._db.execute("DELETE FROM items WHERE tbl = ? AND pk = ?", (table, key))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO items (tbl, pk, item) VALUES (?, ?, ?)",
                (table, key, json.dumps(item.to_json()["Attributes"])),
            )

    def _load_table(self, backend: Any, table: str) -> None:
        try:
            tbl = backend.get_table(table)
        except Exception:  # noqa: BLE001
            return
        for item in self.items(table):
            tbl.put_item(item, overwrite=True)

    def restore_tables(self, backend: Any, tables: Iterable[str]) -> int:
        """Load every stored item of these tables into moto (when a LocalCloud starts)."""
        count = 0
        for table in tables:
            tbl = backend.get_table(table)
            for item in self.items(table):
                tbl.put_item(item, overwrite=True)
                count += 1
        return count

    # --- S3 -----------------------------------------------------------------------------------------
    def object_path(self, bucket: str, key: str) -> Path | None:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            return None  # a key no file can stand for; not persisted (the workflow writes none)
        return self.root / "s3" / bucket / "/".join(quote(p, safe=" -_.,=+@") for p in parts)

    @property
    def restoring(self) -> bool:
        return bool(getattr(self._restoring, "on", False))

    def put_object(self, bucket: str, key: str, value: bytes) -> None:
        if self.restoring:
            return
        path = self.object_path(bucket, key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(value)
        os.replace(tmp, path)

    def delete_object(self, bucket: str, key: str) -> None:
        path = self.object_path(bucket, key)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def restore_bucket(self, backend: Any, bucket: str) -> int:
        """Put every stored object of a bucket into moto's S3 (not written back)."""
        base = self.root / "s3" / bucket
        if not base.is_dir():
            return 0
        count = 0
        self._restoring.on = True
        try:
            for path in base.rglob("*"):
                if not path.is_file() or path.name.startswith("."):
                    continue
                key = "/".join(unquote(p) for p in path.relative_to(base).parts)
                backend.put_object(bucket, key, path.read_bytes(), disable_notification=True)
                count += 1
        finally:
            self._restoring.on = False
        return count

    # --- the run registry ---------------------------------------------------------------------------
    def run_path(self, run_id: str) -> Path:
        return self.root / "runs" / f"{run_id}.json"

    def record_run(self, run_id: str, **fields: Any) -> dict[str, Any]:
        path = self.run_path(run_id)
        record = json.loads(path.read_text()) if path.exists() else {"run_id": run_id}
        record.update(fields, updated_at=time.time())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        os.replace(tmp, path)
        return record

    def run(self, run_id: str) -> dict[str, Any] | None:
        path = self.run_path(run_id)
        if not path.exists():
            return None
        return self._with_liveness(json.loads(path.read_text()))

    def runs(self) -> list[dict[str, Any]]:
        records = []
        for path in (self.root / "runs").glob("*.json"):
            try:
                records.append(self._with_liveness(json.loads(path.read_text())))
            except (OSError, ValueError):
                continue
        return sorted(records, key=lambda r: r.get("started_at", 0))

    @staticmethod
    def _with_liveness(record: dict[str, Any]) -> dict[str, Any]:
        """A run recorded as running whose process is gone was killed: say ``interrupted``."""
        if record.get("status") == "running" and not _alive(record.get("pid")):
            record["status"] = "interrupted"
        return record


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
