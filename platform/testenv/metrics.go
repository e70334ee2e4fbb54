package testenv

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// collect reads everything r holds now.
func collect(tb testing.TB, r *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	tb.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		tb.Fatalf("collect metrics: %v", err)
	}
	return rm
}

// hasAll reports whether set holds every key=value of attrs.
func hasAll(set attribute.Set, attrs []string) bool {
	for _, kv := range attrs {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := set.Value(attribute.Key(k)); !ok || got.Emit() != v {
			return false
		}
	}
	return true
}

// CounterSum sums the data points of the int64 counter name whose
// attributes include every key=value of attrs (none: all of them); 0 when
// nothing was counted.
func CounterSum(tb testing.TB, r *sdkmetric.ManualReader, name string, attrs ...string) int64 {
	tb.Helper()
	var total int64
	for _, sm := range collect(tb, r).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				tb.Fatalf("metric %s is %T, not an int64 counter", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				if hasAll(dp.Attributes, attrs) {
					total += dp.Value
				}
			}
		}
	}
	return total
}

// Gauges reads the gauges of r, by name, from their data point whose
// attributes include every key=value of attrs; a gauge without one is
// absent.
func Gauges(tb testing.TB, r *sdkmetric.ManualReader, attrs ...string) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, sm := range collect(tb, r).ScopeMetrics {
		for _, m := range sm.Metrics {
			switch g := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, dp := range g.DataPoints {
					if hasAll(dp.Attributes, attrs) {
						out[m.Name] = float64(dp.Value)
					}
				}
			case metricdata.Gauge[float64]:
				for _, dp := range g.DataPoints {
					if hasAll(dp.Attributes, attrs) {
						out[m.Name] = dp.Value
					}
				}
			}
		}
	}
	return out
}
