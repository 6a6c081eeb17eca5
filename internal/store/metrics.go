package store

import (
	"context"
	"fmt"
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
