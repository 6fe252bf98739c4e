package kafka

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

// TestPlanAlter: what the receiving broker settles of a config alteration
// before the controller sees it, as Kafka's ConfigAdminManager.preprocess.
func TestPlanAlter(t *testing.T) {
	v := kmsg.StringPtr
	topic := func(name string, cs ...alterEntry) alterResource {
		return alterResource{typ: kmsg.ConfigResourceTypeTopic, name: name, configs: cs}
	}
	broker := func(name string, cs ...alterEntry) alterResource {
		return alterResource{typ: kmsg.ConfigResourceTypeBroker, name: name, configs: cs}
	}
	set := func(k string, val *string) alterEntry {
		return alterEntry{name: k, op: kmsg.IncrementalAlterConfigOpSet, value: val}
	}
	del := func(k string) alterEntry { return alterEntry{name: k, op: kmsg.IncrementalAlterConfigOpDelete} }
	type want struct {
		err *kerr.Error // nil: no error here (a topic goes to the controller)
		msg string
	}
	tests := []struct {
		name   string
		rs     []alterResource
		legacy bool
		want   []want
		topics []controller.TopicAlteration
	}{
		{name: "topics go to the controller in order",
			rs:   []alterResource{topic("a", set("retention.ms", v("1"))), topic("b", del("retention.ms"), alterEntry{name: "cleanup.policy", op: kmsg.IncrementalAlterConfigOpAppend, value: v("delete")})},
			want: []want{{}, {}},
			topics: []controller.TopicAlteration{
				{Name: "a", Ops: []controller.ConfigOp{{Name: "retention.ms", Op: controller.ConfigSet, Value: "1"}}},
				{Name: "b", Ops: []controller.ConfigOp{{Name: "retention.ms", Op: controller.ConfigDelete}, {Name: "cleanup.policy", Op: controller.ConfigAppend, Value: "delete"}}},
			}},
		{name: "a resource named twice: every copy refused",
			rs:     []alterResource{topic("a", set("retention.ms", v("1"))), topic("b"), topic("a", set("retention.ms", v("2")))},
			want:   []want{{kerr.InvalidRequest, "Each resource must appear at most once"}, {}, {kerr.InvalidRequest, "Each resource must appear at most once"}},
			topics: []controller.TopicAlteration{{Name: "b"}}},
		{name: "the same name as a topic and a broker is two resources",
			rs:     []alterResource{topic("3"), broker("3")},
			want:   []want{{}, {}},
			topics: []controller.TopicAlteration{{Name: "3"}}},
		{name: "a config named twice",
			rs:   []alterResource{topic("a", set("retention.ms", v("1")), del("retention.ms"))},
			want: []want{{kerr.InvalidRequest, "Error due to duplicate config keys"}}},
		{name: "null values but for DELETE",
			rs:   []alterResource{topic("a", set("retention.ms", nil), del("segment.bytes"), set("retention.bytes", nil))},
			want: []want{{kerr.InvalidRequest, "Null value not supported for : retention.ms, retention.bytes"}}},
		{name: "legacy: a null value",
			rs: []alterResource{topic("a", set("retention.ms", nil))}, legacy: true,
			want: []want{{kerr.InvalidRequest, "Null value not supported for : retention.ms"}}},
		{name: "broker: this one, no configs",
			rs: []alterResource{broker("3")}, want: []want{{}}},
		{name: "broker: every broker, no configs",
			rs: []alterResource{broker("")}, want: []want{{}}},
		{name: "broker: a config cannot be changed at runtime",
			rs:   []alterResource{broker("3", set("log.retention.ms", v("1000")), set("auto.create.topics.enable", v("false")))},
			want: []want{{kerr.InvalidRequest, "Cannot update these configs dynamically: [auto.create.topics.enable, log.retention.ms]. Flotilla's broker configs come from its YAML config file"}}},
		{name: "broker: every broker, a config",
			rs:   []alterResource{broker("", del("log.retention.ms"))},
			want: []want{{kerr.InvalidRequest, "SIGHUP"}}},
		{name: "broker: legacy too",
			rs: []alterResource{broker("3", set("log.retention.ms", v("1000")))}, legacy: true,
			want: []want{{kerr.InvalidRequest, "Cannot update these configs dynamically: [log.retention.ms]"}}},
		{name: "broker: another one",
			rs:   []alterResource{broker("2", set("log.retention.ms", v("1000")))},
			want: []want{{kerr.InvalidRequest, "Unexpected broker id, expected 3, but received 2"}}},
		{name: "broker: not a number",
			rs:   []alterResource{broker("three")},
			want: []want{{kerr.InvalidRequest, "Node id must be an integer, but it is: three"}}},
		{name: "broker: unknown operation",
			rs:   []alterResource{broker("3", alterEntry{name: "log.retention.ms", op: 9, value: v("1")})},
			want: []want{{kerr.InvalidRequest, "Unknown operations type 9"}}},
		{name: "broker logger",
			rs:   []alterResource{{typ: kmsg.ConfigResourceTypeBrokerLogger, name: "3", configs: []alterEntry{set("kafka", v("DEBUG"))}}},
			want: []want{{kerr.InvalidRequest, "log.level"}}},
		{name: "broker logger in legacy AlterConfigs is unknown, as in Kafka",
			rs: []alterResource{{typ: kmsg.ConfigResourceTypeBrokerLogger, name: "3"}}, legacy: true,
			want: []want{{kerr.InvalidRequest, "Unknown resource type 8"}}},
		{name: "unsupported and unknown types",
			rs:   []alterResource{{typ: kmsg.ConfigResourceTypeGroupConfig, name: "g"}, {typ: 99, name: "x"}},
			want: []want{{kerr.InvalidRequest, "not supported"}, {kerr.InvalidRequest, "Unknown resource type 99"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := planAlter(tc.rs, 3, tc.legacy)
			if len(plan.errs) != len(tc.want) {
				t.Fatalf("%d answers, want %d", len(plan.errs), len(tc.want))
			}
			for i, w := range tc.want {
				err := plan.errs[i]
				switch {
				case w.err == nil && err != nil:
					t.Errorf("resource %d: %v, want none", i, err)
				case w.err != nil && (!errors.Is(err, w.err) || !strings.Contains(err.Error(), w.msg)):
					t.Errorf("resource %d: %v, want %v containing %q", i, err, w.err, w.msg)
				}
			}
			if !reflect.DeepEqual(plan.topics, tc.topics) {
				t.Errorf("to the controller %+v, want %+v", plan.topics, tc.topics)
			}
			for i, ri := range plan.resOfTo {
				if tc.rs[ri].name != plan.topics[i].Name {
					t.Errorf("topic alteration %d is of resource %d, named %q", i, ri, tc.rs[ri].name)
				}
			}
		})
	}
}

// TestAlterConfigsResponse: one answer per resource, in request order,
// with its type and name, for both requests.
func TestAlterConfigsResponse(t *testing.T) {
	inc := kmsg.NewPtrIncrementalAlterConfigsRequest()
	inc.Version = 1
	for _, name := range []string{"a", "b"} {
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, name
		inc.Resources = append(inc.Resources, r)
	}
	legacy := kmsg.NewPtrAlterConfigsRequest()
	legacy.Version = 2
	for _, name := range []string{"a", "b"} {
		r := kmsg.NewAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, name
		legacy.Resources = append(legacy.Resources, r)
	}
	errs := []error{nil, kerr.UnknownTopicOrPartition}
	type answer struct {
		name string
		code int16
	}
	want := []answer{{"a", 0}, {"b", kerr.UnknownTopicOrPartition.Code}}
	for _, req := range []kmsg.Request{inc, legacy} {
		rs, _, _ := alterResources(req)
		var got []answer
		switch resp := alterConfigsResponse(req, rs, errs).(type) {
		case *kmsg.IncrementalAlterConfigsResponse:
			for _, r := range resp.Resources {
				got = append(got, answer{r.ResourceName, r.ErrorCode})
			}
		case *kmsg.AlterConfigsResponse:
			for _, r := range resp.Resources {
				got = append(got, answer{r.ResourceName, r.ErrorCode})
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%T answered %v, want %v", req, got, want)
		}
	}
}
