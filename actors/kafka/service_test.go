package kafka

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestMessage: a response's error message is what is particular to the
// failure, as Kafka's ApiError.fromThrowable sends it; a client prints it
// after the error's name (the Java client makes it the exception's
// message), so it must not repeat the name and generic description.
func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want *string
	}{
		{nil, nil},
		{kerr.UnknownTopicOrPartition, nil},
		{fmt.Errorf("%w: Topic currently has 4 partitions, which is higher than the requested 3", kerr.InvalidPartitions),
			ptr("Topic currently has 4 partitions, which is higher than the requested 3")},
		{fmt.Errorf("%w: %w", kerr.NotController, errors.New("no leader")), ptr("no leader")},
		// A Kafka error wrapped inside other text keeps it all.
		{fmt.Errorf("partition 3: %w", kerr.NotLeaderForPartition), ptr("partition 3: " + kerr.NotLeaderForPartition.Error())},
		{errors.New("disk on fire"), ptr("disk on fire")},
	} {
		got := message(tc.err)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("message(%v) = %s, want %s", tc.err, show(got), show(tc.want))
		}
	}
}

func ptr(s string) *string { return &s }

func show(s *string) string {
	if s == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", *s)
}
