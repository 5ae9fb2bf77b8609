#!/usr/bin/env python3
"""Strata from Python: create a topic, produce keyed records, fetch them back, check them, then
consume them again as a member of a consumer group and commit the group's offsets.

Uses grpcio and protobuf with code generated from Strata's proto/ at run time (Debian's protoc
and grpc_python_plugin; see README.md next to this file). Run with the interpreter that has the
modules, on Debian /usr/bin/python3:

    /usr/bin/python3 examples/python/strata_example.py 127.0.0.1:50051

It prints one JSON summary line on stdout and exits 0 when every record fetched back, directly and
through the group, equals what was produced (at the acknowledged partition and offset), 1 on any
mismatch, 2 on any other error (unreachable server, gRPC error, a group that does not settle in
time, code generation failure).
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
import uuid

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


def fetch_once(log, pb, topic, partition, offset, timeout, mismatches):
    """One Fetch from `offset`; returns (records, next offset, high watermark)."""
    response = log.Fetch(pb.FetchRequest(topic=topic, partition=partition, offset=offset), timeout=timeout)
    position = offset
    for record in response.records:
        if record.offset != position:
            mismatches.append(f"partition {partition}: expected offset {position}, got {record.offset}")
        position = record.offset + 1
    if response.next_offset != position:
        mismatches.append(f"partition {partition}: next_offset {response.next_offset}, expected {position}")
    if not response.records and offset < response.high_watermark:
        mismatches.append(f"partition {partition}: fetch at {offset} below the high watermark {response.high_watermark} returned nothing")
    return list(response.records), max(position, response.next_offset), response.high_watermark


def fetch_partition(log, pb, topic, partition, offset, timeout, mismatches):
    """Every record of a partition from `offset` up to its high watermark."""
    records = []
    while True:
        batch, offset, high_watermark = fetch_once(log, pb, topic, partition, offset, timeout, mismatches)
        records.extend(batch)
        if offset >= high_watermark or not batch:
            return records


def compare(expected, got, how, mismatches):
    """Checks that `got` ({(partition, offset): record}) holds exactly the records produced."""
    for position, record in sorted(expected.items()):
        if position not in got:
            mismatches.append(f"partition {position[0]} offset {position[1]}: missing ({how})")
        elif describe(got[position]) != describe(record):
            mismatches.append(f"partition {position[0]} offset {position[1]}: {how} {describe(got[position])}, produced {describe(record)}")
    for position in sorted(set(got) - set(expected)):
        mismatches.append(f"partition {position[0]} offset {position[1]}: a record that was not produced ({how})")


class GroupMember:
    """One consumer-group member of one topic, living the life the header of groups.proto describes:
    join with epoch 0, heartbeat every heartbeat_interval_ms with keep_subscription and
    owned_partitions, give up revoked partitions after committing them, leave with epoch -1."""

    def __init__(self, grpc, pb, stub, group_id, topic, timeout, deadline):
        self.grpc, self.pb, self.stub = grpc, pb, stub
        self.group_id, self.topic, self.timeout, self.deadline = group_id, topic, timeout, deadline
        # groups.proto recommends a member id of our own, generated once and kept for the member's
        # life: a client can then send again a join whose answer was lost (this script does not
        # retry: a call that fails other than as handled below ends the run).
        self.member_id = str(uuid.uuid4())
        self.epoch = 0
        self.interval_ms = 0
        self.assignment = set()  # partitions the latest answer lets us own
        self.owned = set()  # partitions we hold: the assignment, and revoked ones not yet given up
        self.positions = {}  # partition -> next offset to consume, for partitions we fetch
        self.committed = {}  # partition -> the last offset committed
        self.commit_epoch = None  # the member epoch of the last commit stored
        self.next_heartbeat = 0.0
        self.joins = 0
        self.heartbeats = 0

    def _send(self, request):
        if time.monotonic() > self.deadline:
            raise Failure(f"group {self.group_id}: not done within --group-timeout (member epoch {self.epoch}, owning {sorted(self.owned)}, assigned {sorted(self.assignment)})")
        self.heartbeats += 1
        response = self.stub.Heartbeat(request, timeout=self.timeout)
        self.member_id = response.member_id
        self.epoch = response.member_epoch
        self.interval_ms = response.heartbeat_interval_ms
        self.next_heartbeat = time.monotonic() + self.interval_ms / 1000
        self.assignment = {p for entry in response.assignment if entry.topic == self.topic for p in entry.partitions}
        self.owned |= self.assignment  # new partitions are ours from now on

    def join(self):
        """Heartbeat with epoch 0 and the whole subscription (also how a removed member comes back)."""
        self.joins += 1
        self.epoch, self.owned, self.positions = 0, set(), {}
        self._send(self.pb.HeartbeatRequest(group_id=self.group_id, member_id=self.member_id, member_epoch=0, client_id="strata_example.py", subscribed_topic_names=[self.topic]))

    def heartbeat(self):
        """A regular heartbeat: the last epoch, keep_subscription, every partition we still hold."""
        owned = [self.pb.TopicPartitions(topic=self.topic, partitions=sorted(self.owned))] if self.owned else []
        request = self.pb.HeartbeatRequest(group_id=self.group_id, member_id=self.member_id, member_epoch=self.epoch, keep_subscription=True, owned_partitions=owned)
        try:
            self._send(request)
        except self.grpc.RpcError as error:
            # NOT_FOUND: the broker no longer knows us; FAILED_PRECONDITION: fenced and removed.
            # Either way, rejoin with epoch 0 (and consume from the committed offsets again).
            if error.code() not in (self.grpc.StatusCode.NOT_FOUND, self.grpc.StatusCode.FAILED_PRECONDITION):
                raise
            self.join()
            return
        self._give_up_revoked()

    def heartbeat_when_due(self):
        """Waits for the heartbeat interval to pass (never past the deadline), then heartbeats."""
        time.sleep(max(0.0, min(self.next_heartbeat, self.deadline) - time.monotonic()))
        self.heartbeat()

    def heartbeat_if_due(self):
        if time.monotonic() >= self.next_heartbeat:
            self.heartbeat()

    def _give_up_revoked(self):
        """A partition missing from the assignment must be revoked: commit its offset and wait for
        the answer, stop fetching it, and heartbeat at once without it in owned_partitions."""
        revoked = self.owned - self.assignment
        if not revoked:
            return
        if self._commit({p: self.positions[p] for p in revoked if p in self.positions}):
            self.owned -= revoked
            for p in revoked:
                self.positions.pop(p, None)
        # else the commit was refused (stale epoch): the heartbeat gets the epoch to retry with
        self.heartbeat()

    def _commit(self, offsets):
        """One CommitOffsets of {partition: next offset}; False when refused with
        FAILED_PRECONDITION (stale epoch, a partition we do not own, or not in the group)."""
        if not offsets:
            return True
        commits = [self.pb.OffsetCommit(topic=self.topic, partition=p, offset=o) for p, o in sorted(offsets.items())]
        request = self.pb.CommitOffsetsRequest(group_id=self.group_id, member_id=self.member_id, member_epoch=self.epoch, offsets=commits)
        try:
            self.stub.CommitOffsets(request, timeout=self.timeout)
        except self.grpc.RpcError as error:
            if error.code() != self.grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return False
        self.committed.update(offsets)
        self.commit_epoch = self.epoch
        return True

    def commit(self):
        """Commits the position of every partition we hold. When refused, heartbeat at once: after a
        rejoin the commit is lost (False); otherwise retry with the new epoch for what we still hold."""
        while not self._commit({p: o for p, o in self.positions.items() if p in self.owned}):
            joins = self.joins
            self.heartbeat()
            if self.joins != joins:
                return False
        return True

    def leave(self):
        response = self.stub.Heartbeat(self.pb.HeartbeatRequest(group_id=self.group_id, member_id=self.member_id, member_epoch=-1), timeout=self.timeout)
        self.heartbeats += 1
        self.epoch = response.member_epoch
        self.owned, self.assignment = set(), set()


def consume_as_group(grpc, pb, groups, log, log_pb, types_pb, group_id, topic, partitions, args, mismatches):
    """Joins `group_id` subscribed to `topic`, waits until it owns every partition, consumes them
    from the group's committed offsets (or the earliest) to their ends, commits and leaves."""
    member = GroupMember(grpc, pb, groups, group_id, topic, args.timeout, time.monotonic() + args.group_timeout)
    chosen_id = member.member_id
    everything = set(range(partitions))
    consumed = []  # (partition, record) in the order consumed
    member.join()
    try:
        if member.member_id != chosen_id:
            mismatches.append(f"group: joined with member id {chosen_id}, answered {member.member_id}")
        # A single member gets every partition. Stable: a heartbeat that reports all of them as
        # owned is answered with the same assignment and epoch.
        while True:
            epoch = member.epoch
            member.heartbeat_when_due()
            if member.owned == everything and member.assignment == everything and member.epoch == epoch:
                break
        assigned = sorted(member.assignment)

        # Consume every partition we own up to its high watermark (a real consumer goes on).
        committed_before = None  # the group's committed offsets when we started
        start_offsets = {}
        high_watermarks = {}
        while True:
            member.heartbeat_if_due()  # a real consumer keeps heartbeating while it fetches
            new = [p for p in sorted(member.owned) if p not in member.positions]
            if new:
                # Start at the committed offset, or at the earliest one when there is none (a new
                # group has none: FetchOffsets leaves out partitions without a committed offset).
                answer = groups.FetchOffsets(pb.FetchOffsetsRequest(group_id=group_id, topics=[topic]), timeout=args.timeout)
                committed = {c.partition: c.offset for c in answer.offsets if c.topic == topic}
                committed_before = committed if committed_before is None else committed_before
                for p in new:
                    if p in committed:
                        member.positions[p] = committed[p]
                    else:
                        earliest = types_pb.StartPosition(earliest=True)
                        member.positions[p] = log.ListOffsets(log_pb.ListOffsetsRequest(topic=topic, partition=p, position=earliest), timeout=args.timeout).offset
                    start_offsets[p] = member.positions[p]
            behind = [p for p in sorted(member.owned) if p not in high_watermarks or member.positions[p] < high_watermarks[p]]
            if not behind:
                break
            for p in behind:
                records, member.positions[p], high_watermarks[p] = fetch_once(log, log_pb, topic, p, member.positions[p], args.timeout, mismatches)
                if not records and member.positions[p] < high_watermarks[p]:
                    raise Failure(f"group {group_id}: partition {p} makes no progress at offset {member.positions[p]}")
                consumed.extend((p, record) for record in records)

        # Commit the next offset of each partition with the member epoch.
        if not member.commit():
            raise Failure(f"group {group_id}: the commit was lost (the member had to rejoin)")
    except BaseException:
        try:
            member.leave()  # best effort, so the group does not wait for the session to time out
        except Exception:
            pass  # report the first error
        raise
    member.leave()

    # A rejoin (the broker restarted, say) starts again from the committed offsets: records read
    # since are delivered again, as to any at-least-once consumer. They must be the same records.
    records = {}
    redelivered = 0
    for p, record in consumed:
        earlier = records.get((p, record.offset))
        if earlier is not None:
            redelivered += 1
            if earlier != record:
                mismatches.append(f"group: partition {p} offset {record.offset} delivered again with other contents")
        records[(p, record.offset)] = record
    return {
        "id": group_id,
        "member_id": member.member_id,
        "joins": member.joins,
        "heartbeats": member.heartbeats,
        "heartbeat_interval_ms": member.interval_ms,
        "assigned": assigned,
        "committed_before": {str(p): o for p, o in sorted((committed_before or {}).items())},
        "start_offsets": {str(p): o for p, o in sorted(start_offsets.items())},
        "consumed": len(consumed),
        "redelivered": redelivered,
        "consumed_offsets": {str(p): [r.offset for q, r in consumed if q == p] for p in sorted(everything)},
        "commit_epoch": member.commit_epoch,
        "committed": {str(p): o for p, o in sorted(member.committed.items())},
        "left_epoch": member.epoch,
        "records": records,
    }


def run(args):
    import grpc  # imported here so a missing module is reported by main()

    out_dir = tempfile.mkdtemp(prefix="strata-python-")
    try:
        generate_code(args.proto_dir, out_dir)
        sys.path.insert(0, out_dir)
        from strata.v1 import admin_pb2, admin_pb2_grpc, groups_pb2, groups_pb2_grpc, log_pb2, log_pb2_grpc, types_pb2
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
        for record in fetch_partition(log, log_pb2, topic, partition, 0, args.timeout, mismatches):
            fetched[(partition, record.offset)] = record
    compare(expected, fetched, "fetched", mismatches)

    # Consume the topic again, this time as the only member of a consumer group.
    group_id = args.group or f"python-example-group-{os.getpid()}-{int(time.time() * 1000)}"
    group = consume_as_group(grpc, groups_pb2, groups_pb2_grpc.GroupsStub(channel), log, log_pb2, types_pb2, group_id, topic, partitions, args, mismatches)
    compare(expected, group.pop("records"), "consumed through the group", mismatches)

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
        "group": group,
        "mismatches": mismatches[:20],
    }


def main():
    parser = argparse.ArgumentParser(description="Create a topic on a Strata broker, produce keyed records, fetch them back and compare, then consume them as a consumer group.")
    parser.add_argument("address", help="the broker's gRPC address, host:port")
    parser.add_argument("--topic", help="topic to create (default: a fresh python-example-... name)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the new topic (default 3)")
    parser.add_argument("--count", type=int, default=100, help="records to produce (default 100)")
    parser.add_argument("--batch", type=int, default=25, help="records per Produce request (default 25)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the connection and for each call (default 10)")
    parser.add_argument("--group", help="consumer group to consume the topic with (default: a fresh python-example-group-... id)")
    parser.add_argument("--group-timeout", type=float, default=30.0, help="seconds for the whole group part: join, assignment, consume, commit (default 30)")
    parser.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR, help=f"directory holding strata/v1/*.proto (default {DEFAULT_PROTO_DIR})")
    args = parser.parse_args()
    if args.count < 1 or args.batch < 1 or args.partitions < 1 or args.timeout <= 0 or args.group_timeout <= 0:
        parser.error("--count, --batch, --partitions, --timeout and --group-timeout must be positive")
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
