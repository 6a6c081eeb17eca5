package store_test

import (
	"context"
	"testing"
	"time"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestInsertServerMetricsInChunks(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		serverID := storetest.SecretRows(t, db, "x")["servers"]
		in := int64(1 << 40)
		ms := make([]store.ServerMetric, 1234) // three chunks
		for i := range ms {
			ms[i] = store.ServerMetric{ServerID: serverID, CPUPercent: 99.99, RAMUsedMB: i, RAMTotalMB: 4096,
				DiskUsedGB: 1, DiskTotalGB: 2, NetworkInBytes: &in, RecordedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		}
		if err := db.InsertServerMetrics(ctx, ms); err != nil {
			t.Fatal(err)
		}
		var n, sumRAM int
		var cpu float64
		var net int64
		db.QueryRowRaw(ctx, "SELECT COUNT(*), SUM(ram_used_mb), MAX(cpu_percent), MAX(network_in_bytes) FROM server_metrics").Scan(&n, &sumRAM, &cpu, &net)
		if n != 1234 || sumRAM != 1233*1234/2 || cpu != 99.99 || net != in {
			t.Fatalf("stored %d rows, sum %d, cpu %v, net %d", n, sumRAM, cpu, net)
		}
		// A bad row fails the whole batch: nothing half-written.
		bad := []store.ServerMetric{{ServerID: serverID}, {ServerID: store.NewID()}}
		if err := db.InsertServerMetrics(ctx, bad); err == nil {
			t.Fatal("metrics for a missing server accepted")
		}
		db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM server_metrics").Scan(&n)
		if n != 1234 {
			t.Fatalf("a failed batch left %d rows", n-1234)
		}
	})
}

func TestMetricSeriesDownsamples(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		serverID := storetest.SecretRows(t, db, "x")["servers"]
		base := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
		var ms []store.ServerMetric
		in := int64(100)
		for i := range 60 { // one sample every 10 s for 10 minutes
			ms = append(ms, store.ServerMetric{ServerID: serverID, CPUPercent: float64(i % 2 * 50), RAMUsedMB: 1000, RAMTotalMB: 4000,
				DiskUsedGB: 10, DiskTotalGB: 100, NetworkInBytes: &in, RecordedAt: base.Add(time.Duration(i) * 10 * time.Second)})
		}
		if err := db.InsertServerMetrics(ctx, ms); err != nil {
			t.Fatal(err)
		}
		pts, err := db.MetricSeries(ctx, serverID, base, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != 2 || !pts[0].At.Equal(base) || !pts[1].At.Equal(base.Add(5*time.Minute)) {
			t.Fatalf("points %+v", pts)
		}
		if pts[0].CPUPercent != 25 || pts[0].RAMUsedMB != 1000 || pts[0].NetInBytes != 3000 {
			t.Fatalf("first bucket %+v: want CPU 25 (average), RAM 1000, 30 samples × 100 bytes", pts[0])
		}
		latest, err := db.LatestMetrics(ctx)
		if err != nil || !latest[serverID].RecordedAt.Equal(base.Add(590*time.Second)) {
			t.Fatalf("latest = %+v, %v", latest[serverID], err)
		}
	})
}
