package worker

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecoder(t *testing.T) {
	long := `{"type":"heartbeat","error":"` + strings.Repeat("x", MaxMessageSize) + `"}` + "\n"
	tests := []struct {
		name    string
		in      string
		dir     Direction
		want    []Message
		garbage bool
	}{
		{name: "ready and heartbeat", in: `{"type":"ready","pid":42}` + "\n" + `{"type":"heartbeat","requests":7,"in_flight":1}` + "\n", dir: FromWorker,
			want: []Message{{Type: MsgReady, Pid: 42}, {Type: MsgHeartbeat, Requests: 7, InFlight: 1}}},
		{name: "last line without newline", in: `{"type":"stop","mode":"graceful"}`, dir: FromMaster, want: []Message{{Type: MsgStop, Mode: "graceful"}}},
		{name: "unknown fields are tolerated", in: `{"type":"ack","command":"reopen_logs","extra":1}` + "\n", dir: FromWorker, want: []Message{{Type: MsgAck, Command: MsgReopenLogs}}},
		{name: "not json", in: "hello\n", dir: FromWorker, garbage: true},
		{name: "json but not an object", in: "[1,2]\n", dir: FromWorker, garbage: true},
		{name: "unknown type", in: `{"type":"party"}` + "\n", dir: FromWorker, garbage: true},
		{name: "no type", in: `{"pid":1}` + "\n", dir: FromWorker, garbage: true},
		{name: "master type from a worker", in: `{"type":"stop"}` + "\n", dir: FromWorker, garbage: true},
		{name: "worker type from the master", in: `{"type":"ready"}` + "\n", dir: FromMaster, garbage: true},
		{name: "line over 64 KiB", in: long, dir: FromWorker, garbage: true},
		{name: "garbage after a good line", in: `{"type":"ready","pid":1}` + "\n{\n", dir: FromWorker, want: []Message{{Type: MsgReady, Pid: 1}}, garbage: true},
		{name: "empty stream", in: "", dir: FromWorker},
		{name: "upstreams both ways", in: `{"type":"upstreams","id":3,"generation":2,"data":"W10="}` + "\n", dir: FromWorker,
			want: []Message{{Type: MsgUpstreams, ID: 3, Generation: 2, Data: []byte("[]")}}},
		{name: "upstreams_request", in: `{"type":"upstreams_request","id":3}` + "\n", dir: FromMaster, want: []Message{{Type: MsgUpstreamsRequest, ID: 3}}},
		{name: "upstreams_request from a worker", in: `{"type":"upstreams_request","id":3}` + "\n", dir: FromWorker, garbage: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(strings.NewReader(tc.in), tc.dir)
			var got []Message
			var err error
			for {
				var m Message
				m, err = d.Next()
				if err != nil {
					break
				}
				got = append(got, m)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tc.want[i]) {
					t.Errorf("message %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if tc.garbage != errors.Is(err, ErrGarbage) {
				t.Errorf("error %v, want garbage=%v", err, tc.garbage)
			}
			if !tc.garbage && !errors.Is(err, io.EOF) {
				t.Errorf("error %v, want EOF", err)
			}
		})
	}
}

func TestEncoderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	msgs := []Message{{Type: MsgRetire, Requests: 5}, {Type: MsgBootError, Error: "paste.ini:3: [app:main]: boom\nsecond line"}}
	for _, m := range msgs {
		if err := e.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines, want 2: %q", n, buf.String())
	}
	d := NewDecoder(&buf, FromWorker)
	for _, want := range msgs {
		got, err := d.Next()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
	if err := e.Send(Message{Type: MsgBootError, Error: strings.Repeat("x", MaxMessageSize)}); err == nil {
		t.Error("oversized message sent")
	}
}

// A reload carries the validated config, larger than other messages may
// be; only the worker side (FromMaster) accepts such a line.
func TestReloadCarriesConfig(t *testing.T) {
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	files := map[string][]byte{"/etc/paddock/paste.ini": bytes.Repeat([]byte("# a long comment line\n"), 8000)}
	want := Message{Type: MsgReload, Generation: 3, ConfigSHA256: "abc", Files: files}
	if err := e.Send(want); err != nil {
		t.Fatal(err)
	}
	if buf.Len() <= MaxMessageSize {
		t.Fatalf("reload line of %d bytes: the test needs one over MaxMessageSize", buf.Len())
	}
	line := bytes.Clone(buf.Bytes())
	got, err := NewDecoder(&buf, FromMaster).Next()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("worker decoded %+v, %v", got.Type, err)
	}
	if _, err := NewDecoder(bytes.NewReader(line), FromWorker).Next(); !errors.Is(err, ErrGarbage) {
		t.Errorf("master side decoded a %d-byte line: %v", len(line), err)
	}
	if err := e.Send(Message{Type: MsgReload, Files: map[string][]byte{"x": make([]byte, MaxReloadMessageSize)}}); err == nil {
		t.Error("reload over MaxReloadMessageSize sent")
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	now := time.Unix(1000, 0)
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if d := b.fail(now); d != w*time.Second {
			t.Errorf("failure %d: backoff %v, want %v", i+1, d, w*time.Second)
		}
	}
	if b.ready(now.Add(29 * time.Second)) {
		t.Error("ready before the backoff passed")
	}
	if !b.ready(now.Add(30 * time.Second)) {
		t.Error("not ready after the backoff")
	}
	b.reset()
	if !b.ready(now) || b.fail(now) != time.Second {
		t.Error("reset did not forget the failures")
	}
}

func TestHeartbeatInterval(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{0, 10 * time.Second}, {2 * time.Second, 500 * time.Millisecond}, {30 * time.Second, 7500 * time.Millisecond},
		{time.Minute, 10 * time.Second}, {10 * time.Millisecond, 50 * time.Millisecond},
	} {
		if got := heartbeatInterval(tc.timeout); got != tc.want || (tc.timeout > 0 && got > tc.timeout/2 && tc.timeout >= 200*time.Millisecond) {
			t.Errorf("heartbeatInterval(%v) = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}
