package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ServerMetric is one sample of a server's resources.
type ServerMetric struct {
	ID              string // empty: a new ULID
	ServerID        string
	CPUPercent      float64
	RAMUsedMB       int
	RAMTotalMB      int
	DiskUsedGB      int
	DiskTotalGB     int
	NetworkInBytes  *int64
	NetworkOutBytes *int64
	RecordedAt      time.Time
}

// metricsChunk rows go into one INSERT: 10 parameters a row stays far below
// both SQLite's (32766) and PostgreSQL's (65535) parameter limits.
const metricsChunk = 500

const metricsInsertHead = `INSERT INTO server_metrics (id, server_id, cpu_percent, ram_used_mb, ram_total_mb,
	disk_used_gb, disk_total_gb, network_in_bytes, network_out_bytes, recorded_at) VALUES `

// InsertServerMetrics writes samples in one transaction with multi-row
// INSERTs: agents push in batches and SQLite has one writer, so one commit per
// batch rather than per sample is what keeps ingestion cheap.
func (db *DB) InsertServerMetrics(ctx context.Context, ms []ServerMetric) error {
	if len(ms) == 0 {
		return nil
	}
	return db.InTx(ctx, func(tx *Tx) error {
		for start := 0; start < len(ms); start += metricsChunk {
			chunk := ms[start:min(start+metricsChunk, len(ms))]
			var q strings.Builder
			q.WriteString(metricsInsertHead)
			args := make([]any, 0, len(chunk)*10)
			for i, m := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
				id := m.ID
				if id == "" {
					id = NewID()
				}
				at := m.RecordedAt
				if at.IsZero() {
					at = tx.Now()
				}
				args = append(args, id, m.ServerID, m.CPUPercent, m.RAMUsedMB, m.RAMTotalMB,
					m.DiskUsedGB, m.DiskTotalGB, m.NetworkInBytes, m.NetworkOutBytes, at)
			}
			if _, err := tx.exec(ctx, q.String(), args...); err != nil {
				return fmt.Errorf("store: insert %d metrics: %w", len(chunk), err)
			}
		}
		return nil
	})
}

// MetricPoint is one bucket of a server's metrics: averages, and network
// totals, over the bucket.
type MetricPoint struct {
	At          time.Time
	CPUPercent  float64
	RAMUsedMB   float64
	RAMTotalMB  float64
	DiskUsedGB  float64
	DiskTotalGB float64
	NetInBytes  int64
	NetOutBytes int64
}

// MetricSeries returns a server's metrics since a time, downsampled in the
// database to buckets of the given width, so a chart of 7 days reads a few
// hundred rows, not sixty thousand.
func (db *DB) MetricSeries(ctx context.Context, serverID string, since time.Time, bucket time.Duration) ([]MetricPoint, error) {
	secs := int64(bucket / time.Second)
	if secs < 1 {
		secs = 1
	}
	b := "(" + db.d.epoch("recorded_at") + " / " + strconv.FormatInt(secs, 10) + ")"
	rows, err := db.query(ctx, `SELECT `+b+` AS bucket, AVG(cpu_percent), AVG(ram_used_mb), AVG(ram_total_mb), AVG(disk_used_gb), AVG(disk_total_gb),
		COALESCE(SUM(network_in_bytes), 0), COALESCE(SUM(network_out_bytes), 0)
		FROM server_metrics WHERE server_id = ? AND recorded_at >= ? GROUP BY `+b+` ORDER BY bucket`, serverID, since)
	if err != nil {
		return nil, fmt.Errorf("store: metric series: %w", err)
	}
	defer rows.Close()
	var out []MetricPoint
	for rows.Next() {
		var p MetricPoint
		var bk int64
		if err := rows.Scan(&bk, &p.CPUPercent, &p.RAMUsedMB, &p.RAMTotalMB, &p.DiskUsedGB, &p.DiskTotalGB, &p.NetInBytes, &p.NetOutBytes); err != nil {
			return nil, err
		}
		p.At = time.Unix(bk*secs, 0).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// LatestMetrics returns each server's newest sample, for Prometheus.
func (db *DB) LatestMetrics(ctx context.Context) (map[string]ServerMetric, error) {
	rows, err := db.query(ctx, `SELECT m.server_id, m.cpu_percent, m.ram_used_mb, m.ram_total_mb, m.disk_used_gb, m.disk_total_gb, m.recorded_at
		FROM server_metrics m JOIN (SELECT server_id, MAX(recorded_at) AS at FROM server_metrics GROUP BY server_id) l
		ON l.server_id = m.server_id AND l.at = m.recorded_at`)
	if err != nil {
		return nil, fmt.Errorf("store: latest metrics: %w", err)
	}
	defer rows.Close()
	out := map[string]ServerMetric{}
	for rows.Next() {
		var m ServerMetric
		var at nullTime
		if err := rows.Scan(&m.ServerID, &m.CPUPercent, &m.RAMUsedMB, &m.RAMTotalMB, &m.DiskUsedGB, &m.DiskTotalGB, &at); err != nil {
			return nil, err
		}
		m.RecordedAt = at.Time
		out[m.ServerID] = m
	}
	return out, rows.Err()
}

// CountJobsByStatus counts jobs per status, for the panel's own health metrics.
func (db *DB) CountJobsByStatus(ctx context.Context) (map[string]int, error) {
	rows, err := db.query(ctx, "SELECT status, COUNT(*) FROM jobs GROUP BY status")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}
