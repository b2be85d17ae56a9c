"""Writes real Delta tables (the deltalake package, delta-rs) into moto's S3, then copies each into a replica
bucket partially, one case per table. Prints a JSON manifest of what it made on stdout.

Usage: make_tables.py PRIMARY_BUCKET REPLICA_BUCKET [--bench COMMITS FILES]
Environment: AWS_ENDPOINT_URL (moto), AWS credentials (any), AWS_REGION.

What the writer cannot do, and how it is made instead (said plainly):
- multi-part checkpoints: delta-rs writes classic checkpoints only; the classic checkpoint's rows are split
  into K Parquet files named N.checkpoint.P.K.parquet (pyarrow, snappy: the codec Spark writes checkpoints with)
  and the classic file removed;
- in-commit timestamps: delta-rs 1.6.6 refuses delta.enableInCommitTimestamps; the commits of table `ict` are
  rewritten after the writer made them: commitInfo.inCommitTimestamp = 1_700_000_000_000 + v * 60_000 (so the
  RPO by ICT differs from the one by commitInfo.timestamp), the property set in commit 0's metaData;
- catalog-managed: the protocol's writer/reader features gain `catalogManaged` and a staged commit is added
  under _delta_log/_staged_commits/ (delta-rs does not write catalog-managed tables);
- deletion vectors: delta-rs rewrites files on delete instead; the last commit of tables `dv_*` is written by
  hand as the protocol describes a DELETE with a deletion vector (remove the file, add it again with
  `deletionVector` of storage type `u`, the protocol's own example path, so the file is
  ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin), the protocol upgraded in commit 0 to reader 3 /
  writer 7 with `deletionVectors`;
- v2 checkpoints with sidecars: delta-rs writes classic checkpoints only; the classic checkpoint is rewritten as
  the protocol's v2 layout (pyarrow, snappy): a top-level N.checkpoint.<uuid>.parquet holding the protocol
  (reader 3 / writer 7 with `v2Checkpoint`), the metadata, the checkpointMetadata action and one `sidecar`
  action per sidecar file, and the add/remove rows split over files under _delta_log/_sidecars/.
"""
import io, json, os, sys, uuid
import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"))
OPTS = {"AWS_ENDPOINT_URL": ENDPOINT, "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"), "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_FORCE_PATH_STYLE": "true", "conditional_put": "etag"}


def rows(start, n=3):
    return pa.table({"id": pa.array(range(start, start + n), pa.int64())})


def keys(bucket, prefix):
    out, token = [], None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        out += [o["Key"] for o in r.get("Contents", [])]
        if not r.get("IsTruncated"):
            return out
        token = r["NextContinuationToken"]


def get(bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def put(bucket, key, body):
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def log_key(prefix, v):
    return f"{prefix}/_delta_log/{v:020d}.json"


def commit_time(bucket, prefix, v, ict=False):
    """A commit's time as the Delta protocol defines it: its inCommitTimestamp when the table has them, else the
    modification time of its file on the primary (whole seconds, as S3 gives it), never commitInfo.timestamp."""
    if not ict:
        modified = s3.head_object(Bucket=bucket, Key=log_key(prefix, v))["LastModified"]
        return int(modified.timestamp()) * 1000
    for line in get(bucket, log_key(prefix, v)).decode().splitlines():
        a = json.loads(line)
        if "commitInfo" in a:
            return a["commitInfo"].get("inCommitTimestamp")


def data_files_of(bucket, prefix, v):
    out = []
    for line in get(bucket, log_key(prefix, v)).decode().splitlines():
        a = json.loads(line)
        if "add" in a:
            out.append(f"{prefix}/{a['add']['path']}")
    return out


def table(primary, prefix, commits, checkpoint_at=(), delete_at=(), stream_app=None, files_per_commit=1):
    uri = f"s3://{primary}/{prefix}"
    n = 0
    for v in range(commits):
        if v in delete_at:
            DeltaTable(uri, storage_options=OPTS).delete("id % 2 = 0")
        else:
            props = None
            if stream_app:
                props = CommitProperties(app_transactions=[Transaction(app_id=stream_app, version=v)])
            data = rows(n, 3 * files_per_commit)
            if files_per_commit > 1:  # one file per partition value: files_per_commit files per commit
                data = data.append_column("p", pa.array([i % files_per_commit for i in range(data.num_rows)], pa.int64()))
                write_deltalake(uri, data, mode="append", storage_options=OPTS, partition_by=["p"])
            else:
                write_deltalake(uri, data, mode="append", storage_options=OPTS, commit_properties=props)
            n += 3 * files_per_commit
        if v in checkpoint_at:
            DeltaTable(uri, storage_options=OPTS).create_checkpoint()
    return uri


def split_checkpoint(bucket, prefix, version, parts):
    """Rewrites the classic checkpoint at `version` as `parts` parts (pyarrow, snappy)."""
    key = f"{prefix}/_delta_log/{version:020d}.checkpoint.parquet"
    t = pq.read_table(io.BytesIO(get(bucket, key)))
    per = -(-t.num_rows // parts)
    for p in range(parts):
        buf = io.BytesIO()
        pq.write_table(t.slice(p * per, per), buf, compression="snappy")
        put(bucket, f"{prefix}/_delta_log/{version:020d}.checkpoint.{p + 1:010d}.{parts:010d}.parquet", buf.getvalue())
    s3.delete_object(Bucket=bucket, Key=key)
    lc = json.loads(get(bucket, f"{prefix}/_delta_log/_last_checkpoint"))
    lc["parts"] = parts
    put(bucket, f"{prefix}/_delta_log/_last_checkpoint", json.dumps(lc).encode())


def json_action(row):
    """A checkpoint row (pyarrow's Python form, maps as lists of pairs) as the one action of a JSON line."""
    (name, action), = [(k, v) for k, v in row.items() if v is not None]
    if name == "metaData":
        action = {**action, "configuration": dict(action["configuration"] or []),
                  "format": {**action["format"], "options": dict(action["format"]["options"] or [])}}
    return {name: {k: v for k, v in action.items() if v is not None}}


def v2_checkpoint(bucket, prefix, version, sidecars, top_json=False):
    """Rewrites the classic checkpoint at `version` as a v2 checkpoint with `sidecars` sidecar files, its top-level
    file in Parquet or (`top_json`) JSON lines, as the protocol allows both; returns the sidecars' keys."""
    key = f"{prefix}/_delta_log/{version:020d}.checkpoint.parquet"
    t = pq.read_table(io.BytesIO(get(bucket, key)))
    rows = t.to_pylist()
    files = [r for r in rows if r["add"] or r["remove"]]
    top = [r for r in rows if not (r["add"] or r["remove"])]
    for r in top:
        if r["protocol"]:
            r["protocol"] = {"minReaderVersion": 3, "minWriterVersion": 7,
                             "readerFeatures": ["v2Checkpoint"], "writerFeatures": ["v2Checkpoint"]}
    side_schema = pa.schema([t.schema.field("add"), t.schema.field("remove")])
    per = -(-len(files) // sidecars)
    keys = []
    empty = {name: None for name in t.schema.names}
    for i in range(sidecars):
        name = f"{uuid.uuid4()}.parquet"
        buf = io.BytesIO()
        chunk = [{"add": r["add"], "remove": r["remove"]} for r in files[i * per:(i + 1) * per]]
        pq.write_table(pa.Table.from_pylist(chunk, schema=side_schema), buf, compression="snappy")
        body = buf.getvalue()
        keys.append(f"{prefix}/_delta_log/_sidecars/{name}")
        put(bucket, keys[-1], body)
        top.append({**empty, "sidecar": {"path": name, "sizeInBytes": len(body), "modificationTime": 0, "tags": None}})
    schema = t.schema.append(pa.field("checkpointMetadata", pa.struct([pa.field("version", pa.int64(), nullable=False)])))
    top = [{**r, "checkpointMetadata": None} for r in top] + [{**empty, "checkpointMetadata": {"version": version}}]
    name = f"{prefix}/_delta_log/{version:020d}.checkpoint.{uuid.uuid4()}"
    if top_json:
        put(bucket, f"{name}.json", ("\n".join(json.dumps(json_action(r)) for r in top) + "\n").encode())
    else:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(top, schema=schema), buf, compression="snappy")
        put(bucket, f"{name}.parquet", buf.getvalue())
    s3.delete_object(Bucket=bucket, Key=key)
    return keys


# The protocol's example of a deletion vector stored by a relative path (storage type `u`): its file.
DV_INLINE = "ab^-aqEH.-t@S}K{vb[*k^"
DV_FILE = "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"


def rewrite_commit(bucket, prefix, v, f):
    lines = [json.dumps(f(json.loads(line))) for line in get(bucket, log_key(prefix, v)).decode().splitlines()]
    put(bucket, log_key(prefix, v), ("\n".join(lines) + "\n").encode())


def deletion_vector_commit(bucket, prefix, v):
    """Commit `v`: a DELETE that marks rows of the first data file of commit v-1 with a deletion vector."""
    def protocol(a):
        if "protocol" in a:
            a["protocol"] = {"minReaderVersion": 3, "minWriterVersion": 7,
                             "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}
        return a
    rewrite_commit(bucket, prefix, 0, protocol)
    prev = [json.loads(line) for line in get(bucket, log_key(prefix, v - 1)).decode().splitlines()]
    add = next(a["add"] for a in prev if "add" in a)
    now = commit_time(bucket, prefix, v - 1) + 1000
    dv = {"storageType": "u", "pathOrInlineDv": DV_INLINE, "offset": 1, "sizeInBytes": 36, "cardinality": 2}
    put(bucket, f"{prefix}/{DV_FILE}", b"\x00" * 41)
    actions = [
        {"commitInfo": {"timestamp": now, "operation": "DELETE", "operationParameters": {"predicate": "id = 0"}}},
        {"remove": {"path": add["path"], "deletionTimestamp": now, "dataChange": True, "extendedFileMetadata": True,
                    "partitionValues": add["partitionValues"], "size": add["size"]}},
        {"add": {**add, "modificationTime": now, "dataChange": True, "deletionVector": dv}},
    ]
    put(bucket, log_key(prefix, v), ("\n".join(json.dumps(a) for a in actions) + "\n").encode())


Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85(data):
    """Z85 (the encoding of a `u` deletion vector's UUID), 4 bytes to 5 characters."""
    out = ""
    for i in range(0, len(data), 4):
        n = int.from_bytes(data[i:i + 4], "big")
        out += "".join(Z85[(n // 85 ** k) % 85] for k in range(4, -1, -1))
    return out


DV_TYPE = pa.struct([("storageType", pa.string()), ("pathOrInlineDv", pa.string()), ("offset", pa.int32()),
                     ("sizeInBytes", pa.int32()), ("cardinality", pa.int64())])
STR_MAP = pa.map_(pa.string(), pa.string())
SPARK_CHECKPOINT = pa.schema([
    ("protocol", pa.struct([("minReaderVersion", pa.int32()), ("minWriterVersion", pa.int32()),
                            ("readerFeatures", pa.list_(pa.string())), ("writerFeatures", pa.list_(pa.string()))])),
    ("metaData", pa.struct([("id", pa.string()), ("format", pa.struct([("provider", pa.string()), ("options", STR_MAP)])),
                            ("schemaString", pa.string()), ("partitionColumns", pa.list_(pa.string())),
                            ("configuration", STR_MAP), ("createdTime", pa.int64())])),
    ("add", pa.struct([("path", pa.string()), ("partitionValues", STR_MAP), ("size", pa.int64()),
                       ("modificationTime", pa.int64()), ("dataChange", pa.bool_()), ("stats", pa.string()),
                       ("deletionVector", DV_TYPE)])),
    ("remove", pa.struct([("path", pa.string()), ("deletionTimestamp", pa.int64()), ("dataChange", pa.bool_()),
                          ("deletionVector", DV_TYPE)])),
])


def second_deletion_vector(bucket, prefix, v):
    """Commit `v`: a second DELETE on the file commit v-1 gave a deletion vector (remove (a, DV1), add (a, DV2),
    written add first), then a classic checkpoint at `v` as Spark writes one: the live adds and the tombstones
    sorted by path, so the tombstone of (a, DV1) follows the live (a, DV2). Returns DV2's file (relative)."""
    prev = [json.loads(line) for line in get(bucket, log_key(prefix, v - 1)).decode().splitlines()]
    add1 = next(a["add"] for a in prev if "add" in a and a["add"].get("deletionVector"))
    u = uuid.uuid4()
    dv2 = {"storageType": "u", "pathOrInlineDv": "cd" + z85(u.bytes), "offset": 1, "sizeInBytes": 40, "cardinality": 3}
    dv2_file = f"cd/deletion_vector_{u}.bin"
    put(bucket, f"{prefix}/{dv2_file}", b"\x00" * 45)
    now = commit_time(bucket, prefix, v - 1) + 1000
    actions = [
        {"commitInfo": {"timestamp": now, "operation": "DELETE", "operationParameters": {"predicate": "id = 1"}}},
        {"add": {**add1, "modificationTime": now, "deletionVector": dv2}},
        {"remove": {"path": add1["path"], "deletionTimestamp": now, "dataChange": True, "deletionVector": add1["deletionVector"]}},
    ]
    put(bucket, log_key(prefix, v), ("\n".join(json.dumps(a) for a in actions) + "\n").encode())
    # The table's state at v, replayed from its commits (removes before adds within one, by (path, DV id)).
    def key(f):
        dv = f.get("deletionVector")
        return (f["path"], dv and dv["storageType"] + dv["pathOrInlineDv"] + "@" + str(dv.get("offset")))
    live, tombstones, protocol, meta = {}, {}, None, None
    for w in range(v + 1):
        acts = [json.loads(line) for line in get(bucket, log_key(prefix, w)).decode().splitlines()]
        for a in acts:
            protocol = a.get("protocol", protocol)
            meta = a.get("metaData", meta)
            if "remove" in a:
                live.pop(key(a["remove"]), None)
                tombstones[key(a["remove"])] = a["remove"]
        for a in acts:
            if "add" in a:
                live[key(a["add"])] = a["add"]
    def row(**kw):
        return {"protocol": None, "metaData": None, "add": None, "remove": None, **kw}
    files = [(f["path"], 0, row(add={"path": f["path"], "partitionValues": list((f.get("partitionValues") or {}).items()),
                                      "size": f["size"], "modificationTime": f["modificationTime"], "dataChange": False,
                                      "stats": f.get("stats"), "deletionVector": f.get("deletionVector")}))
             for f in live.values()]
    files += [(r["path"], 1, row(remove={"path": r["path"], "deletionTimestamp": r.get("deletionTimestamp"),
                                          "dataChange": False, "deletionVector": r.get("deletionVector")}))
              for r in tombstones.values()]
    fmt = meta["format"]
    rows = [row(protocol=protocol), row(metaData={**meta, "format": {"provider": fmt["provider"], "options": list((fmt.get("options") or {}).items())},
                                                  "configuration": list((meta.get("configuration") or {}).items())})]
    rows += [r for _, _, r in sorted(files, key=lambda t: (t[0], t[1]))]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SPARK_CHECKPOINT), buf, compression="snappy")
    put(bucket, f"{prefix}/_delta_log/{v:020d}.checkpoint.parquet", buf.getvalue())
    put(bucket, f"{prefix}/_delta_log/_last_checkpoint", json.dumps({"version": v, "size": len(rows)}).encode())
    return dv2_file


def replicate(primary, replica, prefix, skip=lambda k: False):
    for k in keys(primary, prefix + "/"):
        if not skip(k):
            put(replica, k, get(primary, k))


def main():
    primary, replica = sys.argv[1], sys.argv[2]
    out = {}
    if len(sys.argv) > 3 and sys.argv[3] == "--bench":
        commits, files = int(sys.argv[4]), int(sys.argv[5])
        per = max(1, files // commits)
        prefix = "bench/big"
        table(primary, prefix, commits, checkpoint_at=(commits // 2,), files_per_commit=per)
        replicate(primary, replica, prefix)
        out["bench"] = {"prefix": prefix, "newest": commits - 1}
        print(json.dumps(out))
        return

    # complete: inserts, a delete, a classic checkpoint at 4, all replicated.
    p = "tables/complete"
    table(primary, p, 7, checkpoint_at=(4,), delete_at=(3,))
    replicate(primary, replica, p)
    out["complete"] = {"newest": 6, "consistent": 6, "times": {v: commit_time(primary, p, v) for v in range(7)}}

    # missing-commit: commit 5 never arrived (6 and 7 did): consistent at 4 (the checkpoint).
    p = "tables/missing_commit"
    table(primary, p, 8, checkpoint_at=(4,))
    replicate(primary, replica, p, skip=lambda k: k == log_key(p, 5))
    out["missing_commit"] = {"newest": 7, "consistent": 4, "times": {v: commit_time(primary, p, v) for v in range(8)}}

    # data-ahead: commit 6's data file has not arrived: consistent at 5.
    p = "tables/data_ahead"
    table(primary, p, 7, checkpoint_at=(3,), delete_at=(2,))
    late = set(data_files_of(primary, p, 6))
    replicate(primary, replica, p, skip=lambda k: k in late)
    out["data_ahead"] = {"newest": 6, "consistent": 5, "times": {v: commit_time(primary, p, v) for v in range(7)}}

    # incomplete-checkpoint: a 3-part checkpoint at 8 with part 2 missing, an older classic one at 4 (complete),
    # and commits 0..3 expired from the replica's log. The replica's _last_checkpoint names 8, so a reader of 8..10
    # fails (delta-kernel-rs does not fall back from a hint); 5..7 read from checkpoint 4: consistent at 7.
    p = "tables/incomplete_checkpoint"
    table(primary, p, 11, checkpoint_at=(4, 8))
    split_checkpoint(primary, p, 8, 3)
    missing_part = f"{p}/_delta_log/{8:020d}.checkpoint.{2:010d}.{3:010d}.parquet"
    replicate(primary, replica, p, skip=lambda k: k == missing_part or k in {log_key(p, v) for v in range(4)})
    out["incomplete_checkpoint"] = {"newest": 10, "consistent": 7, "times": {v: commit_time(primary, p, v) for v in range(11)}}

    # multi-part complete, and behind: the 3-part checkpoint at 8 whole, commits 9 and 10 not replicated yet.
    p = "tables/multipart"
    table(primary, p, 11, checkpoint_at=(8,))
    split_checkpoint(primary, p, 8, 3)
    replicate(primary, replica, p, skip=lambda k: k in {log_key(p, 9), log_key(p, 10)} | {log_key(p, v) for v in range(5)})
    out["multipart"] = {"newest": 10, "consistent": 8, "times": {v: commit_time(primary, p, v) for v in range(11)}}

    # dv-whole and dv-late: commit 4 deletes rows with a deletion vector; replicated whole, consistent at 4; with
    # the deletion vector's file not arrived, commit 4 is ahead of its files: consistent at 3.
    for case, skip_dv in (("dv_whole", False), ("dv_late", True)):
        p = f"tables/{case}"
        table(primary, p, 4)
        deletion_vector_commit(primary, p, 4)
        replicate(primary, replica, p, skip=lambda k: skip_dv and k == f"{p}/{DV_FILE}")
        out[case] = {"newest": 4, "consistent": 3 if skip_dv else 4, "dv_file": DV_FILE,
                     "times": {v: commit_time(primary, p, v) for v in range(5)}}

    # dv-twice: the table, written as Spark writes it: commit 4 DELETEs with DV1, commit 5 DELETEs the same
    # file again with DV2, a Spark checkpoint at 5 (the tombstone (a, DV1) right after the live (a, DV2)); the
    # replica lacks only DV2's file: a reader of 5 fails to read a's deletion vector, consistent at 4.
    p = "tables/dv_twice"
    table(primary, p, 4)
    deletion_vector_commit(primary, p, 4)
    dv2 = second_deletion_vector(primary, p, 5)
    replicate(primary, replica, p, skip=lambda k: k == f"{p}/{dv2}")
    out["dv_twice"] = {"newest": 5, "consistent": 4, "dv_file": dv2, "times": {v: commit_time(primary, p, v) for v in range(6)}}

    # v2-checkpoint (and v2-json-checkpoint, its top-level file in JSON): the checkpoint at 8 in the v2 layout
    # with 2 sidecars, whole; commits 0..4 expired from the replica's log, 9 and 10 not replicated yet:
    # consistent at 8 from the v2 checkpoint and its sidecars alone.
    for case, top_json in (("v2_checkpoint", False), ("v2_json_checkpoint", True)):
        p = f"tables/{case}"
        table(primary, p, 11, checkpoint_at=(8,), delete_at=(6,))
        v2_checkpoint(primary, p, 8, 2, top_json=top_json)
        replicate(primary, replica, p, skip=lambda k: k in {log_key(p, 9), log_key(p, 10)} | {log_key(p, v) for v in range(5)})
        out[case] = {"newest": 10, "consistent": 8, "times": {v: commit_time(primary, p, v) for v in range(11)}}

    # v2-file-late: the v2 checkpoint and its sidecars whole, but a data file of commit 1, live at 8 and named
    # only in a sidecar (commits 0..4 expired), has not arrived: no version is consistent.
    p = "tables/v2_file_late"
    table(primary, p, 9, checkpoint_at=(8,))
    v2_checkpoint(primary, p, 8, 2)
    late = set(data_files_of(primary, p, 1))
    replicate(primary, replica, p, skip=lambda k: k in late or k in {log_key(p, v) for v in range(5)})
    out["v2_file_late"] = {"newest": 8, "late": sorted(late)}

    # v2-missing-sidecar: one of the v2 checkpoint's 2 sidecars has not arrived; a classic checkpoint at 4 and
    # commits 5..10 have, 0..3 expired. A reader of 8..10 starts from the v2 checkpoint (the newest complete by its
    # name) and fails on the sidecar: consistent at 7, from checkpoint 4 (never 10 from checkpoint 4 through 8..10).
    p = "tables/v2_missing_sidecar"
    table(primary, p, 11, checkpoint_at=(4, 8))
    late = v2_checkpoint(primary, p, 8, 2)[1]
    replicate(primary, replica, p, skip=lambda k: k == late or k in {log_key(p, v) for v in range(4)})
    out["v2_missing_sidecar"] = {"newest": 10, "consistent": 7, "times": {v: commit_time(primary, p, v) for v in range(11)}}

    # ict: in-commit timestamps (rewritten, see above); commit 4 missing: consistent at 3.
    p = "tables/ict"
    table(primary, p, 6)
    for v in range(6):
        lines = []
        for line in get(primary, log_key(p, v)).decode().splitlines():
            a = json.loads(line)
            if "commitInfo" in a:
                a = {"commitInfo": {**a["commitInfo"], "inCommitTimestamp": 1_700_000_000_000 + v * 60_000}}
            if "metaData" in a:
                a["metaData"]["configuration"]["delta.enableInCommitTimestamps"] = "true"
            lines.append(json.dumps(a))
        put(primary, log_key(p, v), ("\n".join(lines) + "\n").encode())
    replicate(primary, replica, p, skip=lambda k: k == log_key(p, 4))
    out["ict"] = {"newest": 5, "consistent": 3, "times": {v: commit_time(primary, p, v, ict=True) for v in range(6)}}

    # catalog-managed: catalogManaged in the protocol and a staged commit.
    p = "tables/catalog_managed"
    table(primary, p, 3)
    lines = []
    for line in get(primary, log_key(p, 0)).decode().splitlines():
        a = json.loads(line)
        if "protocol" in a:
            a["protocol"]["readerFeatures"] = sorted(set(a["protocol"].get("readerFeatures") or []) | {"catalogManaged"})
            a["protocol"]["writerFeatures"] = sorted(set(a["protocol"].get("writerFeatures") or []) | {"catalogManaged"})
        lines.append(json.dumps(a))
    put(primary, log_key(p, 0), ("\n".join(lines) + "\n").encode())
    put(primary, f"{p}/_delta_log/_staged_commits/{3:020d}.{uuid.uuid4()}.json", get(primary, log_key(p, 2)))
    replicate(primary, replica, p)
    out["catalog_managed"] = {"newest": 2}

    # stream: a sink written batch by batch with txn(appId=query id, version=batch); its checkpoint replicated
    # whole (batches 0..5 committed) while the sink's commit 5 (batch 5) and 4's data are not: sink consistent
    # at 3 (batch 3) -> the checkpoint is ahead: roll back to batch 3.
    qid = "5f1b9c3e-0000-4000-8000-000000000001"
    p = "tables/stream_sink"
    table(primary, p, 6, stream_app=qid)
    late = set(data_files_of(primary, p, 4))
    replicate(primary, replica, p, skip=lambda k: k in late or k == log_key(p, 5))
    c = "checkpoints/stream"
    put(primary, f"{c}/metadata", json.dumps({"id": qid}).encode() + b"\n")
    for b in range(6):
        put(primary, f"{c}/offsets/{b}", b'v1\n{"batchWatermarkMs":0,"batchTimestampMs":0}\n{"logOffset":%d}' % b)
        put(primary, f"{c}/commits/{b}", b'v1\n{"nextBatchWatermarkMs":0}')
    replicate(primary, replica, c)
    out["stream"] = {"query_id": qid, "sink_consistent": 3, "checkpoint_batch": 5, "times": {v: commit_time(primary, p, v) for v in range(6)}}

    # prefix: artifacts, two not replicated.
    for i in range(5):
        put(primary, f"artifacts/run-{i}.bin", b"x" * (i + 1))
    replicate(primary, replica, "artifacts", skip=lambda k: k in {"artifacts/run-1.bin", "artifacts/run-3.bin"})
    out["prefix"] = {"missing": 2}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
