/*
Package group is Kafka's group coordinator: consumer groups (and any other
protocol type — the broker only relays the leader's assignment) with their
committed offsets, replicated so that a group survives the loss of its
coordinator's broker.

# Where groups live

Groups live in the partitions of the internal topic __consumer_offsets
(controller.OffsetsTopic, kafka.offsets_topic_partitions partitions,
replication factor min(3, voters in the config's peers)), created on the
first FindCoordinator once that many brokers have registered.
A group belongs to partition PartitionFor(group id), Kafka's hash, and its
coordinator is that partition's Raft leader.

Every offsets partition is a Raft group whose state machine is a Machine,
a raftactor.Extension. Its entries are Kafka's own offsets-topic records
(OffsetCommitKey/Value, GroupMetadataKey/Value; nil values are
tombstones). Every replica materialises them at apply into the groups'
last written membership and committed offsets, and its Raft snapshot is
that state, so the log stays short and a new leader is a ready
coordinator as soon as it has applied an entry of its own term (the
readiness barrier; until then COORDINATOR_LOAD_IN_PROGRESS).

# Actors and messages

An offsets partition replica is a raftactor group actor (kind "raft",
name "raft/__consumer_offsets/<n>"), a child of the coordinator manager
(kind "groups", name "groups"), which starts and stops them as the
controller assigns the offsets topic, and disseminates their leaderships
with the partitions' (so FindCoordinator is right on every broker).

A Kafka connection sends Call for one group's share of a request to the
local replica of the group's partition; a replica that does not lead
answers NOT_COORDINATOR. Calls are answered with Answer:

  - JoinGroup waits until its rebalance completes (all members rejoined,
    the rebalance timeout, or for an empty group the initial delay);
    KIP-394 member ids; static members (KIP-345) replace their previous
    incarnation and fence it.
  - SyncGroup from the leader writes the generation's membership and
    assignments; every member's SyncGroup is answered once that write is
    applied, so a new coordinator knows the generation.
  - Heartbeat, LeaveGroup (batched), session and rebalance deadlines are
    kept in ticks on the leader, in memory.
  - OffsetCommit is answered once the offsets are applied; OffsetFetch,
    DescribeGroups and ListGroups read the leader's state; DeleteGroups
    and OffsetDelete write tombstones, and so does the leader for offsets
    past kafka.offsets_retention_minutes: a group's once it has been empty
    that long (KIP-211), a standalone consumer's and a stable consumer
    group's of topics it no longer subscribes to once committed that long
    ago (KIP-496), as Kafka's removeExpiredOffsets.

A coordinator that loses its leadership answers everything it had waiting
with NOT_COORDINATOR and drops its in-memory groups; the new leader loads
them from its store — the members of the last written generation, each
with a fresh session — and clients carry on after FindCoordinator.
*/
package group
