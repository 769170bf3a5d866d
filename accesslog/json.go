package accesslog

import (
	"cmp"
	"slices"
	"strconv"
	"time"
)

// jsonKind is what one field of a JSON line renders.
type jsonKind uint8

const (
	jConst jsonKind = iota // the key's value is part of the prefix
	jTimestamp
	jBytes
	jDuration
	jHost
	jMethod
	jPath
	jProto
	jQuery
	jReferer
	jRemoteAddr
	jRequestID
	jStatus
	jUser
	jUserAgent
	jWorkerPID
	jReqHeader
	jRespHeader
	jEnv
	jVar
)

// jsonField is one "key":value of a JSON line; prefix is `,"key":` (no
// comma for the first field), so a line is the prefixes and values in
// order.
type jsonField struct {
	key    string
	prefix string
	kind   jsonKind
	header string
	env    envRef
	v      *Var
}

// TimeFormatJSON is @timestamp's layout, hclog's.
const TimeFormatJSON = "2006-01-02T15:04:05.000000Z07:00"

// jsonFields compiles the fields of a JSON line: FieldsJSON, the Vars
// with a JSONKey, and one field per header and environment atom of the
// format; sorted by key, each key once.
func jsonFields(pieces []piece, vars []Var, l *Logger) []jsonField {
	fields := []jsonField{
		{key: "@level", prefix: `"info"`},
		{key: "@message", prefix: `"request"`},
		{key: "@module", prefix: `"access"`},
		{key: "@timestamp", kind: jTimestamp},
		{key: "bytes", kind: jBytes},
		{key: "duration_s", kind: jDuration},
		{key: "host", kind: jHost},
		{key: "method", kind: jMethod},
		{key: "path", kind: jPath},
		{key: "proto", kind: jProto},
		{key: "query", kind: jQuery},
		{key: "referer", kind: jReferer},
		{key: "remote_addr", kind: jRemoteAddr},
		{key: "request_id", kind: jRequestID},
		{key: "status", kind: jStatus},
		{key: "user", kind: jUser},
		{key: "user_agent", kind: jUserAgent},
		{key: "worker_pid", kind: jWorkerPID},
	}
	for i := range vars {
		if vars[i].JSONKey != "" {
			fields = append(fields, jsonField{key: vars[i].JSONKey, kind: jVar, v: &vars[i]})
		}
	}
	env := 0
	for _, p := range pieces {
		switch p.kind {
		case kReqHeader:
			fields = append(fields, jsonField{key: "request_header_" + fieldName(p.name), kind: jReqHeader, header: p.text})
		case kRespHeader:
			fields = append(fields, jsonField{key: "response_header_" + fieldName(p.name), kind: jRespHeader, header: p.text})
		case kEnv:
			ref := l.envs[env]
			env++
			if ref.cgi == cgiVar_ && ref.v.JSONKey != "" {
				continue // already a field of its own
			}
			fields = append(fields, jsonField{key: "env_" + fieldName(p.name), kind: jEnv, env: ref})
		}
	}
	slices.SortStableFunc(fields, func(a, b jsonField) int { return cmp.Compare(a.key, b.key) })
	fields = slices.CompactFunc(fields, func(a, b jsonField) bool { return a.key == b.key })
	for i := range fields {
		f := &fields[i]
		var p []byte
		if i > 0 {
			p = append(p, ',')
		}
		p = appendJSONString(p, f.key)
		p = append(p, ':')
		f.prefix = string(p) + f.prefix // jConst fields carry their value
	}
	return fields
}

// fieldName makes a header or variable name a JSON key part: lower case,
// anything but letters, digits and _ becomes _.
func fieldName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// appendJSON renders e as one JSON object and a newline.
func (l *Logger) appendJSON(b []byte, e *Entry) []byte {
	r := e.Request
	b = append(b, '{')
	for i := range l.json {
		f := &l.json[i]
		b = append(b, f.prefix...)
		switch f.kind {
		case jConst:
		case jTimestamp:
			b = append(b, '"')
			b = e.Start.AppendFormat(b, TimeFormatJSON)
			b = append(b, '"')
		case jBytes:
			b = strconv.AppendInt(b, e.Bytes, 10)
		case jDuration:
			b = appendDecimalSeconds(b, e.Duration)
		case jHost:
			b = appendJSONString(b, r.Host)
		case jMethod:
			b = appendJSONString(b, r.Method)
		case jPath:
			b = appendJSONString(b, r.URL.Path)
		case jProto:
			b = appendJSONString(b, r.Proto)
		case jQuery:
			b = appendJSONString(b, r.URL.RawQuery)
		case jReferer:
			b = appendJSONHeader(b, r.Header["Referer"])
		case jRemoteAddr:
			b = appendJSONString(b, remoteHost(r.RemoteAddr))
		case jRequestID:
			b = appendJSONString(b, requestID(e))
		case jStatus:
			b = strconv.AppendInt(b, int64(e.Status), 10)
		case jUser:
			var buf [96]byte
			b = appendJSONString(b, basicUser(r, buf[:0]))
		case jUserAgent:
			b = appendJSONHeader(b, r.Header["User-Agent"])
		case jWorkerPID:
			b = strconv.AppendInt(b, int64(l.pid), 10)
		case jReqHeader:
			b = appendJSONHeader(b, r.Header[f.header])
		case jRespHeader:
			b = appendJSONHeader(b, e.Header[f.header])
		case jEnv:
			if f.env.cgi == cgiVar_ {
				b = appendJSONVar(b, f.env.v)
			} else if v, ok := cgiValue(r, &f.env); ok {
				b = appendJSONString(b, v)
			} else {
				b = append(b, "null"...)
			}
		case jVar:
			b = appendJSONVar(b, f.v)
		}
	}
	return append(b, '}', '\n')
}

func appendJSONVar(b []byte, v *Var) []byte {
	if v.Number {
		return v.Append(b)
	}
	// Render into the line, then quote in place: the value is the
	// server's own (no escaping needed beyond what appendJSONString does),
	// so render to a small stack buffer first.
	var buf [64]byte
	return appendJSONString(b, v.Append(buf[:0]))
}

// appendJSONHeader is a header's values joined by ", ", or "" when absent.
func appendJSONHeader(b []byte, v []string) []byte {
	switch len(v) {
	case 0:
		return append(b, '"', '"')
	case 1:
		return appendJSONString(b, v[0])
	}
	b = append(b, '"')
	for i, s := range v {
		if i > 0 {
			b = append(b, ", "...)
		}
		q := appendJSONString(nil, s)
		b = append(b, q[1:len(q)-1]...)
	}
	return append(b, '"')
}

// requestID is the request id the pipeline answered with (the request_id
// filter's X-Openstack-Request-Id, or X-Request-Id), else the one the
// client sent.
func requestID(e *Entry) string {
	for _, h := range []string{"X-Request-Id", "X-Openstack-Request-Id"} {
		if v := e.Header[h]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	if v := e.Request.Header["X-Request-Id"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// durationOf is the time since start, never negative.
func durationOf(start, end time.Time) time.Duration {
	if d := end.Sub(start); d > 0 {
		return d
	}
	return 0
}
