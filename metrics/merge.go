package metrics

import (
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// mergeInto adds family f into dst[name]: series with the same labels are
// summed (counters, gauges, untyped values; histogram counts, sums and
// buckets; summary counts and sums — quantiles cannot be summed and are
// dropped), others are appended. dst keeps its own copies.
func mergeInto(dst map[string]*dto.MetricFamily, name string, f *dto.MetricFamily) error {
	have, ok := dst[name]
	if !ok {
		c := proto.Clone(f).(*dto.MetricFamily)
		for _, m := range c.Metric {
			if m.Summary != nil {
				m.Summary.Quantile = nil
			}
		}
		dst[name] = c
		return nil
	}
	if have.GetType() != f.GetType() {
		return fmt.Errorf("metrics: %s is a %v in one snapshot and a %v in another", name, have.GetType(), f.GetType())
	}
	index := make(map[string]*dto.Metric, len(have.Metric))
	for _, m := range have.Metric {
		index[labelKey(m)] = m
	}
	for _, m := range f.Metric {
		into, ok := index[labelKey(m)]
		if !ok {
			c := proto.Clone(m).(*dto.Metric)
			if c.Summary != nil {
				c.Summary.Quantile = nil
			}
			have.Metric = append(have.Metric, c)
			index[labelKey(c)] = c
			continue
		}
		if err := addMetric(into, m); err != nil {
			return fmt.Errorf("metrics: %s: %w", name, err)
		}
	}
	slices.SortFunc(have.Metric, func(a, b *dto.Metric) int { return strings.Compare(labelKey(a), labelKey(b)) })
	return nil
}

// labelKey identifies a series within its family.
func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.Label {
		b.WriteString(l.GetName())
		b.WriteByte(0)
		b.WriteString(l.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}

func addMetric(into, m *dto.Metric) error {
	switch {
	case m.Counter != nil && into.Counter != nil:
		into.Counter.Value = proto.Float64(into.Counter.GetValue() + m.Counter.GetValue())
	case m.Gauge != nil && into.Gauge != nil:
		into.Gauge.Value = proto.Float64(into.Gauge.GetValue() + m.Gauge.GetValue())
	case m.Untyped != nil && into.Untyped != nil:
		into.Untyped.Value = proto.Float64(into.Untyped.GetValue() + m.Untyped.GetValue())
	case m.Summary != nil && into.Summary != nil:
		into.Summary.SampleCount = proto.Uint64(into.Summary.GetSampleCount() + m.Summary.GetSampleCount())
		into.Summary.SampleSum = proto.Float64(into.Summary.GetSampleSum() + m.Summary.GetSampleSum())
	case m.Histogram != nil && into.Histogram != nil:
		return addHistogram(into.Histogram, m.Histogram)
	default:
		return fmt.Errorf("series %q changed type", labelKey(m))
	}
	return nil
}

// addHistogram sums classic histograms with the same bucket bounds.
func addHistogram(into, h *dto.Histogram) error {
	if len(into.Bucket) != len(h.Bucket) {
		return fmt.Errorf("histograms with %d and %d buckets", len(into.Bucket), len(h.Bucket))
	}
	for i, b := range h.Bucket {
		if into.Bucket[i].GetUpperBound() != b.GetUpperBound() {
			return fmt.Errorf("histogram bucket %d bounds %v and %v", i, into.Bucket[i].GetUpperBound(), b.GetUpperBound())
		}
		into.Bucket[i].CumulativeCount = proto.Uint64(into.Bucket[i].GetCumulativeCount() + b.GetCumulativeCount())
	}
	into.SampleCount = proto.Uint64(into.GetSampleCount() + h.GetSampleCount())
	into.SampleSum = proto.Float64(into.GetSampleSum() + h.GetSampleSum())
	return nil
}
