#!/usr/bin/env python3
"""Strata from Python: create a topic, produce keyed records, fetch them back, check them.

Uses grpcio and protobuf with code generated from Strata's proto/ at run time (Debian's protoc
and grpc_python_plugin; see README.md next to this file). Run with the interpreter that has the
modules, on Debian /usr/bin/python3:

    /usr/bin/python3 examples/python/strata_example.py 127.0.0.1:50051

It prints one JSON summary line on stdout and exits 0 when every record fetched back equals what
was produced (at the acknowledged partition and offset), 1 on any mismatch, 2 on any other error
(unreachable server, gRPC error, code generation failure).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(SCRIPT_DIR, "..", "..", "proto"))
DEFAULT_PLUGIN = "/usr/bin/grpc_python_plugin"


class Failure(Exception):
    """An error that is not a data mismatch (exit code 2)."""


def generate_code(proto_dir, out_dir):
    """Runs protoc with the gRPC Python plugin over proto/strata/v1/*.proto into out_dir."""
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    if not protoc:
        raise Failure("protoc not found (Debian: apt-get install protobuf-compiler)")
    plugin = os.environ.get("GRPC_PYTHON_PLUGIN") or (DEFAULT_PLUGIN if os.path.exists(DEFAULT_PLUGIN) else shutil.which("grpc_python_plugin"))
    if not plugin:
        raise Failure("grpc_python_plugin not found (Debian: apt-get install protobuf-compiler-grpc)")
    protos = sorted(glob.glob(os.path.join(proto_dir, "strata", "v1", "*.proto")))
    if not protos:
        raise Failure(f"no .proto files under {proto_dir}/strata/v1")
    command = [protoc, "-I", proto_dir, f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}", *protos]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure(f"protoc failed ({result.returncode}): {result.stderr.strip()}")


def murmur2(data):
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    m = 0x5BD1E995
    mask = 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length & ~3
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key, partitions):
    """The partition Strata (and Kafka's default partitioner) picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def make_records(count, pb):
    """`count` keyed records: a few keys repeat, every 10th is a tombstone, some carry headers."""
    records = []
    base_ms = int(time.time() * 1000)
    for i in range(count):
        record = pb.Record(key=f"customer-{i % 7}".encode(), timestamp=base_ms + i)
        if i % 10 != 9:
            record.value = json.dumps({"n": i, "text": f"record {i} from Python"}).encode()
        # else: a tombstone, `value` stays absent (proto3 optional)
        record.headers.add(key="source", value=b"strata_example.py")
        if i % 3 == 0:
            record.headers.add(key="empty-header")  # a header with a null value
        records.append(record)
    return records


def describe(record):
    """What must survive a round trip, in comparable form."""
    return {
        "key": record.key.hex() if record.HasField("key") else None,
        "value": record.value.hex() if record.HasField("value") else None,
        "headers": [[h.key, h.value.hex() if h.HasField("value") else None] for h in record.headers],
        "timestamp": record.timestamp,
    }


def run(args):
    import grpc  # imported here so a missing module is reported by main()

    out_dir = tempfile.mkdtemp(prefix="strata-python-")
    try:
        generate_code(args.proto_dir, out_dir)
        sys.path.insert(0, out_dir)
        from strata.v1 import admin_pb2, admin_pb2_grpc, log_pb2, log_pb2_grpc, types_pb2
    finally:
        # The modules are loaded; the generated files are no longer needed.
        shutil.rmtree(out_dir, ignore_errors=True)

    # No HTTP proxy for a broker address (grpc honours http_proxy otherwise).
    channel = grpc.insecure_channel(args.address, options=[("grpc.enable_http_proxy", 0)])
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        raise Failure(f"could not connect to {args.address} within {args.timeout:g} s")
    admin = admin_pb2_grpc.AdminStub(channel)
    log = log_pb2_grpc.LogStub(channel)

    topic = args.topic or f"python-example-{os.getpid()}-{int(time.time() * 1000)}"
    created = admin.CreateTopic(admin_pb2.CreateTopicRequest(name=topic, partitions=args.partitions), timeout=args.timeout)
    partitions = len(created.partitions)

    # Produce through the plain `records` path in a few requests; no partition is given, so the
    # broker places each record by murmur2 of its key (one batch per partition per request).
    records = make_records(args.count, types_pb2)
    expected = {}  # (partition, offset) -> record
    mismatches = []
    requests = 0
    for start in range(0, len(records), args.batch):
        chunk = records[start : start + args.batch]
        response = log.Produce(log_pb2.ProduceRequest(topic=topic, records=chunk, acks=types_pb2.ACKS_ALL, correlation_id=requests), timeout=args.timeout)
        requests += 1
        if response.correlation_id != requests - 1:
            mismatches.append(f"request {requests - 1}: correlation_id {response.correlation_id} echoed")
        by_partition = {}
        for record in chunk:
            by_partition.setdefault(partition_for_key(record.key, partitions), []).append(record)
        answered = sorted(batch.partition for batch in response.batches)
        if answered != sorted(by_partition):
            mismatches.append(f"request {requests - 1}: batches for partitions {answered}, expected {sorted(by_partition)} (murmur2 of the keys)")
            continue
        for batch in response.batches:
            group = by_partition[batch.partition]
            if batch.last_offset - batch.base_offset + 1 != len(group):
                mismatches.append(f"partition {batch.partition}: offsets {batch.base_offset}..{batch.last_offset} for {len(group)} records")
                continue
            for i, record in enumerate(group):
                expected[(batch.partition, batch.base_offset + i)] = record

    # Fetch every partition from offset 0 up to its high watermark and compare.
    fetched = {}
    for partition in range(partitions):
        offset = 0
        high_watermark = None
        while high_watermark is None or offset < high_watermark:
            response = log.Fetch(log_pb2.FetchRequest(topic=topic, partition=partition, offset=offset), timeout=args.timeout)
            high_watermark = response.high_watermark
            if not response.records and offset < high_watermark:
                mismatches.append(f"partition {partition}: fetch at {offset} below the high watermark {high_watermark} returned nothing")
                break
            for record in response.records:
                if record.offset != offset:
                    mismatches.append(f"partition {partition}: expected offset {offset}, got {record.offset}")
                fetched[(partition, record.offset)] = record
                offset = record.offset + 1
            if response.next_offset != offset:
                mismatches.append(f"partition {partition}: next_offset {response.next_offset}, expected {offset}")
                offset = max(offset, response.next_offset)

    for position, record in sorted(expected.items()):
        got = fetched.get(position)
        if got is None:
            mismatches.append(f"partition {position[0]} offset {position[1]}: missing")
        elif describe(got) != describe(record):
            mismatches.append(f"partition {position[0]} offset {position[1]}: fetched {describe(got)}, produced {describe(record)}")
    for position in sorted(set(fetched) - set(expected)):
        mismatches.append(f"partition {position[0]} offset {position[1]}: a record that was not produced")

    channel.close()
    return {
        "ok": not mismatches,
        "topic": topic,
        "partitions": partitions,
        "requests": requests,
        "produced": len(records),
        "fetched": len(fetched),
        "per_partition": {str(p): sum(1 for (q, _) in fetched if q == p) for p in range(partitions)},
        "tombstones": sum(1 for r in fetched.values() if not r.HasField("value")),
        "mismatches": mismatches[:20],
    }


def main():
    parser = argparse.ArgumentParser(description="Create a topic on a Strata broker, produce keyed records, fetch them back and compare.")
    parser.add_argument("address", help="the broker's gRPC address, host:port")
    parser.add_argument("--topic", help="topic to create (default: a fresh python-example-... name)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the new topic (default 3)")
    parser.add_argument("--count", type=int, default=100, help="records to produce (default 100)")
    parser.add_argument("--batch", type=int, default=25, help="records per Produce request (default 25)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the connection and for each call (default 10)")
    parser.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR, help=f"directory holding strata/v1/*.proto (default {DEFAULT_PROTO_DIR})")
    args = parser.parse_args()
    if args.count < 1 or args.batch < 1 or args.partitions < 1 or args.timeout <= 0:
        parser.error("--count, --batch, --partitions and --timeout must be positive")
    try:
        summary = run(args)
    except ImportError as error:
        print(json.dumps({"ok": False, "error": f"{error} (Debian: apt-get install python3-grpcio python3-protobuf; run with /usr/bin/python3)"}))
        return 2
    except Failure as error:
        print(json.dumps({"ok": False, "error": str(error)}))
        return 2
    except Exception as error:  # grpc.RpcError and anything unexpected
        code = getattr(error, "code", None)
        details = getattr(error, "details", None)
        if callable(code) and callable(details):
            message = f"gRPC {code().name}: {details()}"
        else:
            message = f"{type(error).__name__}: {error}"
        print(json.dumps({"ok": False, "error": message}))
        return 2
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
