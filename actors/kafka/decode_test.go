package kafka

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// body is a request as the reader hands it to decodeRequest: the frame
// without its size.
func body(req kmsg.Request, correlationID int32, clientID *string) []byte {
	var f *kmsg.RequestFormatter
	if clientID != nil {
		f = kmsg.NewRequestFormatter(kmsg.FormatterClientID(*clientID))
	} else {
		f = kmsg.NewRequestFormatter()
	}
	return f.AppendRequest(nil, req, correlationID)[4:]
}

func testVersions(t *testing.T) *versions {
	t.Helper()
	v, err := newVersions((&testHandler{}).Versions())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDecodeRequestHeader(t *testing.T) {
	served := testVersions(t)
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 12 // flexible: header v2
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("orders")}}
	d, err := decodeRequest(body(meta, 77, kmsg.StringPtr("app-1")), served)
	if err != nil {
		t.Fatal(err)
	}
	if d.key != keyMetadata || d.version != 12 || d.correlationID != 77 || d.clientID == nil || *d.clientID != "app-1" {
		t.Fatalf("decoded header %+v", d)
	}
	got, ok := d.msg.(*kmsg.MetadataRequest)
	if !ok || len(got.Topics) != 1 || *got.Topics[0].Topic != "orders" {
		t.Fatalf("decoded body %+v", d.msg)
	}

	// Null client id, non-flexible version.
	meta.Version = 4
	d, err = decodeRequest(body(meta, 78, nil), served)
	if err != nil || d.clientID != nil || d.version != 4 {
		t.Fatalf("null client id: %+v, %v", d, err)
	}
}

// TestDecodeSkipsHeaderTags: a flexible request header may carry tagged
// fields of its own, which are skipped before the body.
func TestDecodeSkipsHeaderTags(t *testing.T) {
	served := testVersions(t)
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 9
	b := body(meta, 1, kmsg.StringPtr("c"))
	// Header: key, version, correlation id (8), client id (2+1), then the
	// empty tag section (one 0 byte) this replaces with one tag of 3 bytes.
	tagged := append(append([]byte{}, b[:11]...), 1, 5, 3, 'a', 'b', 'c')
	tagged = append(tagged, b[12:]...)
	if _, err := decodeRequest(tagged, served); err != nil {
		t.Fatalf("header with a tag: %v", err)
	}
	bad := append(append([]byte{}, b[:11]...), 1, 5, 60, 'a')
	if _, err := decodeRequest(bad, served); !errors.Is(err, errMalformed) {
		t.Fatalf("tag longer than the request: %v, want malformed", err)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	served := testVersions(t)
	produce := func(v int16) []byte {
		r := kmsg.NewPtrProduceRequest()
		r.Version = v
		return body(r, 1, nil)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 11
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 9
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("orders")}}
	metaBody := body(meta, 1, nil)
	cases := []struct {
		name string
		body []byte
		want error
	}{
		{"empty", nil, errMalformed},
		{"seven bytes", []byte{0, 3, 0, 9, 0, 0, 0}, errMalformed},
		{"no client id", []byte{0, 3, 0, 9, 0, 0, 0, 1}, errMalformed},
		{"client id longer than the request", []byte{0, 3, 0, 9, 0, 0, 0, 1, 0, 9, 'a'}, errMalformed},
		{"negative client id length", []byte{0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xf0}, errMalformed},
		{"api key unknown to Kafka", []byte{0x7f, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff}, errUnknownAPI},
		{"negative api key", []byte{0xff, 0xfe, 0, 0, 0, 0, 0, 1, 0xff, 0xff}, errUnknownAPI},
		{"api not served", body(fetch, 1, nil), errUnknownAPI},
		{"version below the served range", produce(2), errUnsupportedVersion},
		{"negative version", []byte{0, 0, 0xff, 0xff, 0, 0, 0, 1, 0xff, 0xff}, errUnsupportedVersion},
		{"truncated body", metaBody[:len(metaBody)-2], errMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeRequest(tc.body, served); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// TestDecodeApiVersionsTooNew: ApiVersions of a version we lack is not an
// error but a request without a body, answered per KIP-511.
func TestDecodeApiVersionsTooNew(t *testing.T) {
	served := testVersions(t)
	d, err := decodeRequest([]byte{0, 18, 0x7f, 0xff, 0, 0, 0, 9, 0xff, 0xff, 1, 2, 3}, served)
	if err != nil {
		t.Fatal(err)
	}
	if d.msg != nil || d.correlationID != 9 || d.version != 0x7fff {
		t.Fatalf("decoded %+v", d)
	}
}

func TestNewVersionsRefusesWhatCannotBeServed(t *testing.T) {
	cases := []struct {
		name string
		r    ApiRange
	}{
		{"unknown key", ApiRange{Key: 999, Min: 0, Max: 0}},
		{"built-in key", ApiRange{Key: keyMetadata, Min: 0, Max: 1}},
		{"inverted range", ApiRange{Key: 0, Min: 5, Max: 3}},
		{"negative min", ApiRange{Key: 0, Min: -1, Max: 3}},
		{"above kmsg", ApiRange{Key: 0, Min: 0, Max: 99}},
	}
	for _, tc := range cases {
		if _, err := newVersions([]ApiRange{tc.r}); err == nil {
			t.Errorf("%s: accepted %+v", tc.name, tc.r)
		}
	}
	if _, err := newVersions([]ApiRange{{Key: 1, Min: 4, Max: 4}, {Key: 1, Min: 4, Max: 4}}); err == nil {
		t.Error("accepted a key listed twice")
	}
}

// everyVersion serves every API kmsg knows at every version, so that the
// fuzzer reaches every body decoder (the built-ins keep their own ranges).
func everyVersion(tb testing.TB) *versions {
	tb.Helper()
	var ranges []ApiRange
	for key := int16(0); key < 200; key++ {
		req := kmsg.RequestForKey(key)
		if req == nil || key == keyMetadata || key == keyApiVersions || key == keyDescribeCluster {
			continue
		}
		ranges = append(ranges, ApiRange{Key: key, Min: 0, Max: req.MaxVersion()})
	}
	v, err := newVersions(ranges)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// FuzzDecodeRequest feeds arbitrary request bodies through the decoding path
// and the answers this package gives itself: nothing may panic.
func FuzzDecodeRequest(f *testing.F) {
	for key := int16(0); key < 200; key++ {
		req := kmsg.RequestForKey(key)
		if req == nil {
			continue
		}
		for v := int16(0); v <= req.MaxVersion(); v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			if b, ok := tryBody(req); ok {
				f.Add(b)
			}
		}
	}
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 12
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("orders")}, {TopicID: [16]byte{1}}, {TopicID: [16]byte{9}}}
	f.Add(body(meta, 1, kmsg.StringPtr("seed")))
	f.Add([]byte{0, 18, 0x7f, 0xff, 0, 0, 0, 9, 0xff, 0xff})

	served := everyVersion(f)
	src := &testSource{
		cluster: Cluster{ClusterID: "c", ControllerID: 1, Brokers: []Broker{{NodeID: 1, Host: "h", Port: 1}}},
		topics:  []Topic{{Name: "orders", ID: [16]byte{1}, Partitions: []Partition{{Leader: -1}}}},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeRequest(b, served)
		if err != nil {
			return
		}
		var resp kmsg.Response
		switch m := d.msg.(type) {
		case nil:
			resp = unsupportedApiVersionsResponse(served)
		case *kmsg.ApiVersionsRequest:
			resp = apiVersionsResponse(m, served)
		case *kmsg.MetadataRequest:
			resp = metadataResponse(m, src)
		case *kmsg.DescribeClusterRequest:
			resp = describeClusterResponse(m, src)
		default:
			return
		}
		appendResponse(nil, d.correlationID, resp)
	})
}

// tryBody encodes a zero request, which kmsg cannot do for every API (a nil
// where the protocol has no null panics).
func tryBody(req kmsg.Request) (b []byte, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return body(req, 1, kmsg.StringPtr("seed")), true
}

// TestDecodeRefusesLongStrings: a flexible request's compact strings may
// be longer than Kafka reads (32767 bytes); Kafka's generated readers
// refuse them and close the connection, in every request, and so does
// decodeRequest. The group coordinator's records could not hold such an
// id. Nullable strings count; byte fields do not.
func TestDecodeRefusesLongStrings(t *testing.T) {
	served := everyVersion(t)
	long, longest := strings.Repeat("g", 40_000), strings.Repeat("g", maxString)
	commit := func(group, topic string) kmsg.Request {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version, r.Group, r.Generation = 8, group, -1
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Offset: 1}}}}
		return r
	}
	join := func(instance *string, protocol string) kmsg.Request {
		r := kmsg.NewPtrJoinGroupRequest()
		r.Version, r.Group, r.InstanceID, r.ProtocolType = 9, "g", instance, "consumer"
		r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: protocol, Metadata: make([]byte, 50_000)}}
		return r
	}
	describe := kmsg.NewPtrDescribeGroupsRequest()
	describe.Version, describe.Groups = 5, []string{"g", long}
	produce := func(txn *string, topic string) kmsg.Request {
		r := kmsg.NewPtrProduceRequest()
		r.Version, r.TransactionID = 9, txn
		r.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Records: make([]byte, 50_000)}}}}
		return r
	}
	fetch := func(rack, topic string) kmsg.Request {
		r := kmsg.NewPtrFetchRequest()
		r.Version, r.ReplicaID, r.Rack = 12, -1, rack
		r.Topics = []kmsg.FetchRequestTopic{{Topic: topic, Partitions: []kmsg.FetchRequestTopicPartition{{PartitionMaxBytes: 1}}}}
		return r
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version, sync.Group, sync.MemberID, sync.Generation = 5, "g", "m", 1
	sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: "m", MemberAssignment: make([]byte, 50_000)}}
	metadata := commit("g", "t").(*kmsg.OffsetCommitRequest)
	metadata.Topics[0].Partitions[0].Metadata = &long
	reason := join(nil, "range").(*kmsg.JoinGroupRequest)
	reason.Reason = &long
	for _, tc := range []struct {
		name   string
		req    kmsg.Request
		refuse bool
	}{
		{"OffsetCommit v8, a long group id", commit(long, "t"), true},
		{"OffsetCommit v8, a long topic", commit("g", long), true},
		{"OffsetCommit v8, the longest group id and topic", commit(longest, longest), false},
		{"JoinGroup v9, a long group instance id", join(&long, "range"), true},
		{"JoinGroup v9, a long protocol name", join(nil, long), true},
		{"JoinGroup v9, long metadata bytes", join(&longest, "range"), false},
		{"DescribeGroups v5, a long group id in the list", describe, true},
		{"OffsetCommit v8, long metadata (nullable)", metadata, true},
		{"JoinGroup v9, a long reason (nullable)", reason, true},
		{"SyncGroup v5, a long assignment (bytes)", sync, false},
		{"Produce v9, a long topic", produce(nil, long), true},
		{"Produce v9, a long transactional id", produce(&long, "t"), true},
		{"Produce v9, the longest transactional id and topic", produce(&longest, longest), false},
		{"Fetch v12, a long topic", fetch("", long), true},
		{"Fetch v12, a long rack id", fetch(long, "t"), true},
		{"Fetch v12, the longest rack id and topic", fetch(longest, longest), false},
	} {
		_, err := decodeRequest(body(tc.req, 1, kmsg.StringPtr("c")), served)
		if refused := errors.Is(err, errMalformed); refused != tc.refuse || !refused && err != nil {
			t.Errorf("%s: error %v, want refused %v", tc.name, err, tc.refuse)
		}
	}
}

// benchRequests are requests of the sizes clients send: two of more than
// maxString bytes (a thousand partitions), two small ones, and the hot
// path's.
func benchRequests() map[string]kmsg.Request {
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version, commit.Group, commit.Generation, commit.MemberID = 8, "g", 1, "m"
	for t := range 50 {
		tp := kmsg.OffsetCommitRequestTopic{Topic: fmt.Sprintf("topic-%d", t)}
		for p := range 20 {
			tp.Partitions = append(tp.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: int32(p), Offset: 1, Metadata: kmsg.StringPtr("")})
		}
		commit.Topics = append(commit.Topics, tp)
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 7
	for t := range 50 {
		tp := kmsg.ListOffsetsRequestTopic{Topic: fmt.Sprintf("topic-%d", t)}
		for p := range 20 {
			tp.Partitions = append(tp.Partitions, kmsg.ListOffsetsRequestTopicPartition{Partition: int32(p), Timestamp: -1, CurrentLeaderEpoch: -1})
		}
		lo.Topics = append(lo.Topics, tp)
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version, hb.Group, hb.MemberID = 4, "g", "member-1"
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.ProtocolType = 9, "g", "consumer"
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: make([]byte, 2000)}, {Name: "cooperative-sticky", Metadata: make([]byte, 2000)}}
	produce := kmsg.NewPtrProduceRequest()
	produce.Version, produce.Acks, produce.TimeoutMillis = 9, -1, 30_000
	for t := range 4 {
		tp := kmsg.ProduceRequestTopic{Topic: fmt.Sprintf("topic-%d", t)}
		for p := range 4 {
			tp.Partitions = append(tp.Partitions, kmsg.ProduceRequestTopicPartition{Partition: int32(p), Records: make([]byte, 16<<10)})
		}
		produce.Topics = append(produce.Topics, tp)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.ReplicaID, fetch.MaxWaitMillis, fetch.MaxBytes, fetch.Rack = 12, -1, 500, 50<<20, "rack"
	for t := range 10 {
		tp := kmsg.FetchRequestTopic{Topic: fmt.Sprintf("topic-%d", t)}
		for p := range 10 {
			tp.Partitions = append(tp.Partitions, kmsg.FetchRequestTopicPartition{Partition: int32(p), CurrentLeaderEpoch: -1, PartitionMaxBytes: 1 << 20})
		}
		fetch.Topics = append(fetch.Topics, tp)
	}
	return map[string]kmsg.Request{"OffsetCommit1000": commit, "ListOffsets1000": lo, "Heartbeat": hb, "JoinGroup": join,
		"Produce16x16KiB": produce, "Fetch100": fetch}
}

// BenchmarkDecodeRequest: what decodeRequest costs, the walk for strings
// longer than maxString included.
func BenchmarkDecodeRequest(b *testing.B) {
	served := everyVersion(b)
	for name, req := range benchRequests() {
		raw := body(req, 1, kmsg.StringPtr("client"))
		b.Run(fmt.Sprintf("%s/%dB", name, len(raw)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeRequest(raw, served); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
